"""Stage 3, the fabric: node facts (EFA, interfaces, /dev/shm), and the transport decision made from them."""
