/// What a record batch encoded by a client must obey before a broker appends it as it came:
/// a whole batch (CRC and structure, within `limits`), at most `maxRecords` records,
/// timestamps within `maxTimestampSkewMilliseconds` of the broker's wall clock, messages of
/// at most `maxMessageBytes` (key, body and headers), and no header in the broker's
/// namespace (`reservedHeaderPrefix`).
///
/// Pure: no file, no clock. The broker maps a `ClientBatchViolation` to its own error; the
/// protocol fuzzer feeds `check` every batch it can make without building the engine.
public struct ClientBatchRules: Sendable, Equatable {
    public var limits: BatchLimits
    public var maxRecords: Int
    public var maxTimestampSkewMilliseconds: Int64
    public var maxMessageBytes: Int
    public var reservedHeaderPrefix: String
    /// Names with the reserved prefix that clients may set all the same.
    public var headersAllowedWithThePrefix: Set<String>

    public init(
        limits: BatchLimits = BatchLimits(), maxRecords: Int, maxTimestampSkewMilliseconds: Int64, maxMessageBytes: Int,
        reservedHeaderPrefix: String, headersAllowedWithThePrefix: Set<String> = []
    ) {
        precondition(maxRecords > 0 && maxTimestampSkewMilliseconds >= 0 && maxMessageBytes >= 0)
        self.limits = limits
        self.maxRecords = maxRecords
        self.maxTimestampSkewMilliseconds = maxTimestampSkewMilliseconds
        self.maxMessageBytes = maxMessageBytes
        self.reservedHeaderPrefix = reservedHeaderPrefix
        self.headersAllowedWithThePrefix = headersAllowedWithThePrefix
    }

    /// The batch and its records, or the first rule it breaks. `receivedAt` is the broker's
    /// wall clock: the timestamp bounds come from it, never from the client's values, so
    /// nothing a client sends can overflow them.
    public func check(_ bytes: [UInt8], receivedAt: Int64) throws(ClientBatchViolation) -> (batch: RecordBatch, records: [StoredRecord]) {
        let batch: RecordBatch
        let records: [StoredRecord]
        do {
            batch = try RecordBatch(validating: bytes, limits: limits)
            // Counted from the header, before the section is decompressed: a few hundred KB
            // of LZ4 can hold millions of small records.
            guard batch.recordCount <= maxRecords else { throw ClientBatchViolation.tooManyRecords(Int(batch.recordCount), limit: maxRecords) }
            records = try batch.validatedRecords()
        } catch let violation as ClientBatchViolation {
            throw violation
        } catch let error as StoreError {
            throw error.code == .corruptBatch ? .corrupt(error.message) : .malformed(error.message)
        } catch {
            preconditionFailure("a batch check threw \(error)")
        }
        let earliest = receivedAt - maxTimestampSkewMilliseconds
        let latest = receivedAt + maxTimestampSkewMilliseconds
        for r in records.map(\.record) {
            guard r.timestamp >= earliest, r.timestamp <= latest else {
                throw .timestampSkew(r.timestamp, receivedAt: receivedAt, limit: maxTimestampSkewMilliseconds)
            }
            let size = (r.key?.count ?? 0) + r.body.count + r.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.count }
            guard size <= maxMessageBytes else { throw .messageTooLarge(size, limit: maxMessageBytes) }
            for h in r.headers where h.name.utf8.starts(with: reservedHeaderPrefix.utf8) && !headersAllowedWithThePrefix.contains(h.name) {
                throw .reservedHeader(h.name, prefix: reservedHeaderPrefix)
            }
        }
        return (batch, records)
    }
}

/// The rule of `ClientBatchRules` a batch broke; `description` says it for the client.
public enum ClientBatchViolation: Error, Sendable, Equatable, CustomStringConvertible {
    /// The CRC does not match: damaged on the way.
    case corrupt(String)
    /// The bytes are not a batch (structure, sizes, counts that disagree).
    case malformed(String)
    case tooManyRecords(Int, limit: Int)
    case timestampSkew(Int64, receivedAt: Int64, limit: Int64)
    case messageTooLarge(Int, limit: Int)
    case reservedHeader(String, prefix: String)

    public var description: String {
        switch self {
        case .corrupt(let why), .malformed(let why):
            return "the record batch: \(why)"
        case .tooManyRecords(let count, let limit):
            return "a batch of \(count) records is over the limit of \(limit) per publish"
        case .timestampSkew(let timestamp, let receivedAt, let limit):
            return "a record's timestamp \(timestamp) is more than \(limit / 1_000) s from the broker's wall clock (\(receivedAt))"
        case .messageTooLarge(let size, let limit):
            return "a message of \(size) bytes is over the topic's limit of \(limit)"
        case .reservedHeader(let name, let prefix):
            return "header \"\(name)\": the \(prefix) prefix is reserved for the broker"
        }
    }
}
