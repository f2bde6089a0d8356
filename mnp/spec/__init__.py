"""Stage 1, the job: a YAML job file (or an AWS Batch job definition) validated into a :class:`JobSpec`."""

from mnp.spec.model import JobSpec, load_spec, spec_from_dict

__all__ = ["JobSpec", "load_spec", "spec_from_dict"]
