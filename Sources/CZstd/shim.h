// libzstd: chunk compression in the repository.
#include <zstd.h>
