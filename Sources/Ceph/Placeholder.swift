// Ceph module.
