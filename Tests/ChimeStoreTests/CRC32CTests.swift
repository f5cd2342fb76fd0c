import CCRC32C
import Testing

@testable import ChimeStore

@Suite struct CRC32CTests {
    @Test func standardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let portable = Array("123456789".utf8).withUnsafeBytes { chime_crc32c_update_portable(0, $0.baseAddress, $0.count) }
        #expect(portable == 0xE306_9283)
    }

    @Test func emptyInputIsZero() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    /// RFC 3720 (iSCSI) test vectors: 32 zero bytes and 32 0xFF bytes.
    @Test func iscsiVectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    }

    @Test(arguments: [1, 7, 8, 31, 32, 33, 100, 4096, 65_537])
    func hardwareAndPortableAgreeAtEveryAlignment(length: Int) {
        var rng = SeededRandom(seed: UInt64(length))
        let data = rng.bytes(length + 16)
        data.withUnsafeBytes { raw in
            for shift in 0..<8 {
                let slice = UnsafeRawBufferPointer(rebasing: raw[shift..<(shift + length)])
                let fast = chime_crc32c_update(0, slice.baseAddress, slice.count)
                let slow = chime_crc32c_update_portable(0, slice.baseAddress, slice.count)
                #expect(fast == slow, "length \(length) shift \(shift)")
            }
        }
    }

    @Test func updateContinuesAcrossPieces() {
        var rng = SeededRandom(seed: 42)
        let data = rng.bytes(10_000)
        let whole = CRC32C.checksum(data)
        data.withUnsafeBytes { raw in
            let first = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[..<3333]))
            #expect(CRC32C.update(first, UnsafeRawBufferPointer(rebasing: raw[3333...])) == whole)
        }
    }
}
