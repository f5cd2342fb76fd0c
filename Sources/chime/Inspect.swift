import ArgumentParser
import ChimeStore
import ChimeWheel
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print and verify the batches or timer entries of a segment file or a log directory.",
        discussion: """
            Reads the bytes themselves: every batch's CRC-32C is checked and damaged ranges are \
            shown with their byte positions; index files are reported on, never trusted. It \
            only reads, so it may run beside a broker, but a batch being written at that \
            moment can show as a damaged tail. Timer-log segments (.timer) are shown entry by \
            entry: kind, wheel level and slot, due time, list link and reference.

            Examples:
              chime inspect data/orders/0/ready                 # every segment of a log
              chime inspect data/orders/0/ready/00000000000000000000.log --records
              chime inspect --verify data/orders/0/ready        # exit 1 on any damage
              chime inspect --json data/orders/0/ready | jq .   # one object per line
            """
    )

    @Argument(help: "A segment file (<20 digits>.log or .timer) or a directory of them.")
    var path: String

    @Flag(name: .long, help: "Also hold every batch's records to its header (count, first and largest timestamp); exit with status 1 if any damage or such a batch is found (and print only those and the summary).")
    var verify = false

    @Flag(name: .long, help: "One JSON object per line: one per batch, per damaged range, per segment, and a summary.")
    var json = false

    @Flag(name: .long, help: "Also print every record (offset, timestamp, key, headers, body preview).")
    var records = false

    func run() throws {
        let files: [String]
        do {
            files = try SegmentInspector.segmentFiles(at: path)
        } catch let error as StoreError {
            throw ValidationError(error.message)
        }
        if files.isEmpty {
            throw ValidationError("\(path) holds no segment files (<20 digits>.log or .timer)")
        }
        var totalBatches = 0, totalRecords: Int64 = 0, totalBytes: Int64 = 0, damage = 0, invalid = 0
        for file in files {
            if !json && !verify { print("\(file)") }
            if SegmentInspector.isTimerSegment(String(file.split(separator: "/").last ?? "")) {
                let summary = try inspectTimer(file)
                totalBatches += summary.batches
                totalBytes += summary.bytes
                damage += summary.damaged.count
                continue
            }
            let summary = try SegmentInspector.inspect(segmentFile: file, checkRecords: verify) { entry in
                switch entry {
                case .batch(let b):
                    if let reason = b.structureError {
                        // CRC-valid, but its records contradict its header.
                        invalid += 1
                        print(json
                            ? "{\"type\":\"invalid\",\"file\":\(Format.json(b.file)),\"position\":\(b.position),\"crc\":\"ok\",\"reason\":\(Format.json(reason))}"
                            : "  INVALID batch \(b.file) at byte \(b.position) (offsets \(b.header.baseOffset)..\(b.header.lastOffset)): \(reason)")
                    }
                    if json {
                        print(batchJSON(b))
                    } else if !verify {
                        let h = b.header
                        print(String(format: "  @%-10lld offsets %lld..%lld  %6u records  %9d bytes  %@  crc ok",
                                     b.position, h.baseOffset, h.lastOffset, h.recordCount, h.totalSize, "\(h.compression ?? .none)".padding(toLength: 4, withPad: " ", startingAt: 0)))
                    }
                    if records && !verify {
                        do {
                            try printRecords(b)
                        } catch let error as StoreError {
                            // CRC-valid but not decodable: say so and go on with the next batch.
                            print(json
                                ? "{\"type\":\"damage\",\"file\":\(Format.json(b.file)),\"position\":\(b.position),\"crc\":\"ok\",\"reason\":\(Format.json(error.message))}"
                                : "    RECORDS UNREADABLE at \(b.position): \(error.message)")
                        }
                    }
                case .damaged(let d):
                    if json {
                        print("{\"type\":\"damage\",\"file\":\(Format.json(d.file)),\"position\":\(d.start),\"end\":\(d.end),\"crc\":\"bad\",\"reason\":\(Format.json(d.reason))}")
                    } else {
                        print("  DAMAGED \(d.file) bytes \(d.start)..<\(d.end): \(d.reason)")
                    }
                }
            }
            totalBatches += summary.batches
            totalRecords += summary.records
            totalBytes += summary.bytes
            damage += summary.damaged.count
            let span = summary.firstOffset.map { "offsets \($0)..\(summary.lastOffset!)" } ?? "no batches"
            if json {
                print("{\"type\":\"segment\",\"file\":\(Format.json(file)),\"baseOffset\":\(summary.baseOffset),\"bytes\":\(summary.bytes),\"batches\":\(summary.batches),\"records\":\(summary.records),\"damaged\":\(summary.damaged.count),\"index\":\"\(summary.index.rawValue)\"}")
            } else if !verify {
                print("  segment: \(summary.batches) batches, \(summary.records) records, \(span), \(Format.bytes(summary.bytes)), index \(summary.index.rawValue), \(summary.damaged.count) damaged range(s)")
            }
        }
        if json {
            print("{\"type\":\"summary\",\"segments\":\(files.count),\"batches\":\(totalBatches),\"records\":\(totalRecords),\"bytes\":\(totalBytes),\"damaged\":\(damage)}")
        } else {
            if files.allSatisfy({ SegmentInspector.isTimerSegment(String($0.split(separator: "/").last ?? "")) }) {
                print("summary: \(files.count) timer segment(s), \(totalBatches) entries, \(Format.bytes(totalBytes)), \(damage) damaged range(s)")
            } else {
                print("summary: \(files.count) segment(s), \(totalBatches) batches, \(totalRecords) records, \(Format.bytes(totalBytes)), \(damage) damaged range(s)")
            }
        }
        if verify && damage + invalid > 0 {
            if !json { print("verify: FAILED, \(damage) damaged range(s), \(invalid) batch(es) whose records contradict their header") }
            throw ExitCode(1)
        } else if verify && !json {
            print("verify: ok")
        }
    }

    /// A timer-log segment, entry by entry.
    private func inspectTimer(_ file: String) throws -> SegmentInspector.SegmentSummary {
        let summary = try SegmentInspector.scan(TimerEntryFormat.self, segmentFile: file) { item in
            switch item {
            case .entry(let position, let frame, let e):
                var body: String? = nil
                if records, e.kind.carriesMessage, let m = try? e.message() { body = Format.preview(m.body) }
                let original = e.originalID
                if json {
                    print("{\"type\":\"timer-entry\",\"file\":\(Format.json(file)),\"position\":\(position),\"kind\":\"\(e.kind)\",\"level\":\(e.level),\"slot\":\(e.slot),\"dueAt\":\(e.dueAt),\"next\":\(e.next),\"reference\":\(e.reference)" + (original.map { ",\"originalID\":\($0)" } ?? "") + ",\"bytes\":\(frame.totalSize),\"crc\":\"ok\"" + (body.map { ",\"body\":\(Format.json($0))" } ?? "") + "}")
                } else if !verify {
                    print(String(format: "  @%-10lld %-15@ level %d slot %3d  due %lld  next %lld  ref %lld  %d bytes  crc ok", position, "\(e.kind)" as NSString, e.level, e.slot, e.dueAt, e.next, e.reference, frame.totalSize) + (original.map { "  id \($0)" } ?? "") + (body.map { "  body=\($0)" } ?? ""))
                }
            case .damaged(let d):
                if json {
                    print("{\"type\":\"damage\",\"file\":\(Format.json(d.file)),\"position\":\(d.start),\"end\":\(d.end),\"crc\":\"bad\",\"reason\":\(Format.json(d.reason))}")
                } else {
                    print("  DAMAGED \(d.file) bytes \(d.start)..<\(d.end): \(d.reason)")
                }
            }
        }
        if json {
            print("{\"type\":\"segment\",\"file\":\(Format.json(file)),\"baseOffset\":\(summary.baseOffset),\"bytes\":\(summary.bytes),\"entries\":\(summary.batches),\"damaged\":\(summary.damaged.count),\"index\":\"\(summary.index.rawValue)\"}")
        } else if !verify {
            print("  timer segment: \(summary.batches) entries, \(Format.bytes(summary.bytes)), index \(summary.index.rawValue), \(summary.damaged.count) damaged range(s)")
        }
        return summary
    }

    private func batchJSON(_ b: SegmentInspector.BatchSummary) -> String {
        let h = b.header
        return "{\"type\":\"batch\",\"file\":\(Format.json(b.file)),\"position\":\(b.position),\"baseOffset\":\(h.baseOffset),\"lastOffset\":\(h.lastOffset),\"records\":\(h.recordCount),\"bytes\":\(h.totalSize),\"compression\":\"\(h.compression ?? .none)\",\"firstTimestamp\":\(h.firstTimestamp),\"maxTimestamp\":\(h.maxTimestamp),\"producerId\":\(h.producerId),\"baseSequence\":\(h.baseSequence),\"crc\":\"ok\"}"
    }

    private func printRecords(_ b: SegmentInspector.BatchSummary) throws {
        for r in try SegmentInspector.records(segmentFile: b.file, position: b.position) {
            let key = r.record.key.map { Format.preview($0, limit: 40) } ?? "-"
            if json {
                let headers = r.record.headers.map { "\(Format.json($0.name)):\(Format.json(Format.preview($0.value)))" }.joined(separator: ",")
                print("{\"type\":\"record\",\"offset\":\(r.offset),\"timestamp\":\(r.record.timestamp),\"key\":\(r.record.key.map { Format.json(Format.preview($0)) } ?? "null"),\"headers\":{\(headers)},\"bodyBytes\":\(r.record.body.count),\"body\":\(Format.json(Format.preview(r.record.body)))}")
            } else {
                let headers = r.record.headers.isEmpty ? "" : " headers " + r.record.headers.map { "\($0.name)=\(Format.preview($0.value, limit: 20))" }.joined(separator: ",")
                print("    #\(r.offset) t=\(r.record.timestamp) key=\(key)\(headers) body=\(Format.preview(r.record.body))")
            }
        }
    }
}
