#ifndef CHIME_CLZ4_SHIM_H
#define CHIME_CLZ4_SHIM_H
#include <lz4.h>
#endif
