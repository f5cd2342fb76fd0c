import NIOCore

extension ByteBuffer {
    /// Writes `value` in decimal ASCII, without making a string: the numbers of text
    /// protocols (beanstalkd's replies, and the benchmark's commands to it).
    public mutating func writeDecimal(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        withUnsafeMutableBytes(of: &digits) { d in
            var v = value
            var i = d.count
            repeat {
                i -= 1
                d[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
                v /= 10
            } while v > 0
            writeBytes(UnsafeRawBufferPointer(rebasing: d[i...]))
        }
    }
}
