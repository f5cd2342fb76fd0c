/// Reading a whole log from some address on, as recovery does: chunk by chunk, past damage.
extension SegmentLog {
    /// Reads every entry from `address` to the end of the log, about `chunkBytes` at a
    /// time, and hands each chunk to `body` with the address it was read from (the first
    /// entry of a chunk can start before it). Damage in the way is reported to `damaged`
    /// and skipped: reading resumes where the log says it can. Other errors end the scan;
    /// so does `goOn` turning false (checked before each chunk).
    public func scan(
        from address: Int64, chunkBytes: Int = 4 << 20, while goOn: () -> Bool = { true }, damaged: (StoreError) -> Void = { _ in },
        _ body: (_ entries: [Format.Entry], _ readFrom: Int64) throws -> Void
    ) throws {
        var at = address
        while at < endOffset && goOn() {
            let entries: [Format.Entry]
            do {
                entries = try read(from: at, maxBytes: chunkBytes)
            } catch let error as StoreError where error.resumeOffset != nil {
                damaged(error)
                assert(error.resumeOffset! > at, "damage at \(at) resumes at \(error.resumeOffset!)")
                at = max(at + 1, error.resumeOffset!)
                continue
            }
            guard let last = entries.last else { return }
            try body(entries, at)
            at = max(at + 1, Format.nextAddress(after: last))
        }
    }
}
