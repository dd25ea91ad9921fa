"""The local control plane: real etcd, kube-apiserver and kwok, built from hack/.

``binaries`` builds and finds the Go binaries, ``pki`` makes the certificates,
``profiles`` turns a cluster profile into Node objects, ``cluster`` starts and
stops the processes. Tests, ``make demo`` and ``leitstand dev-cluster`` share it.
"""
