// librados + librbd (Ceph 16): cluster handles, images, snapshots, diffs, aio reads.
// Debian ships no pkg-config file for them, so the libraries are linked by name.
#include <rados/librados.h>
#include <rbd/librbd.h>
