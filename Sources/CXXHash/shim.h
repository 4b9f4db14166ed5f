// libxxhash: the fast checksum a restore checks each chunk against (XXH3-64).
#include <xxhash.h>
