#ifndef CHIME_CCRC32C_H
#define CHIME_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Continues a CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
/// Start with crc = 0; feed the previous result to continue over more bytes.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, a table otherwise.
uint32_t chime_crc32c_update(uint32_t crc, const void *data, size_t length);

/// The portable table implementation, exposed so tests can compare both paths.
uint32_t chime_crc32c_update_portable(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware path is in use.
int chime_crc32c_hardware_available(void);

#endif
