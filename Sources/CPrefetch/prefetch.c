// Everything this module offers is the inline function in include/vigil_prefetch.h; a C target needs a source.
#include "vigil_prefetch.h"
