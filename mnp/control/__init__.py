"""The control plane between the coordinator and the node agents: typed messages over ZeroMQ with CURVE."""
