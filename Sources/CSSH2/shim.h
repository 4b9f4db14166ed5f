// libssh2: SSH sessions, exec channels, known_hosts checks.
#include <libssh2.h>
#include <libssh2_sftp.h>
