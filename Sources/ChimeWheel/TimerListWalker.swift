import Logging

/// Walks slot lists through the timer log for the wheel: entries read in place with
/// `TimerEntryReader`, damage reported and the walk ended there (what a damaged entry
/// linked to cannot be reached; the wheel goes on with the rest).
struct TimerListWalker: TimerListSource {
    let reader: TimerEntryReader
    let logger: Logger

    func walk(from head: Int64, floor: Int64, stop: Int64 = TimerEntry.noPosition, limit: Int = .max) -> ListWalk {
        var out: [TimerEntryFields] = []
        var at = head
        while at != TimerEntry.noPosition && at != stop && at >= floor && out.count < limit {
            do {
                let e = try reader.fields(at: at)
                out.append(e)
                at = e.next
            } catch {
                logger.error("timer list broken by damage; older entries of this slot are lost", metadata: [
                    "position": "\(at)", "error": "\(error)",
                ])
                return ListWalk(entries: out, rest: TimerEntry.noPosition, damaged: true)
            }
        }
        return ListWalk(entries: out, rest: at >= floor ? at : TimerEntry.noPosition, damaged: false)
    }

    func messageSize(at position: Int64) -> Int? {
        (try? reader.fields(at: position).size) ?? reader.declaredSize(at: position)
    }
}
