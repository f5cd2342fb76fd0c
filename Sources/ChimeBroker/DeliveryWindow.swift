import DequeModule
import HeapModule

/// The delivery state of one log (a partition's ready log, or a group's retry log of it)
/// for one group: a pure state machine, driven with explicit times so tests need no clock.
///
/// Offsets below `frontier` are all acked. The window holds one slot per offset from
/// `frontier` to `readEnd` (the next offset not yet read from the log): waiting for
/// (re)delivery, leased to a member until a deadline, parked (being moved to the retry
/// wheel or the dead-letter topic), or acked. The committed position is `frontier` plus
/// the acked slots above it.
struct DeliveryWindow {
    enum State: UInt8 {
        case waiting, leased, parked, acked
    }

    struct Slot {
        var state: State
        /// Deliveries made so far.
        var attempt: UInt16 = 0
        /// Serial of the current (or last) lease: a receipt must name it.
        var lease: UInt32 = 0
        var keyed = false
        /// Key ordering: delivered, then waiting again (expired, released, revoked) — still
        /// the first of its key, so the messages held back behind it stay held back.
        var holdsKey = false
        var member: UInt64 = 0
        var deadline: Int64 = 0
        var keyHash: UInt64 = 0
    }

    /// A lease's deadline, checked lazily: a timer whose slot was acked, released or
    /// extended since is dropped when it comes up.
    struct LeaseTimer: Comparable {
        var deadline: Int64
        var offset: Int64
        var lease: UInt32
        static func < (a: LeaseTimer, b: LeaseTimer) -> Bool { (a.deadline, a.offset) < (b.deadline, b.offset) }
    }

    enum Refusal: Error, Equatable {
        /// Below the frontier, or acked already.
        case alreadyAcked
        /// Never delivered by this window.
        case unknown
        /// This lease ran out (or was revoked); the message is delivered again.
        case expired
    }

    /// The most messages of one key leased at once (nil: keys are not tracked). Under 1 —
    /// key ordering — a message delivered and waiting again stays first of its key; above
    /// 1 the messages of a key go in any order.
    private(set) var keyLimit: Int?
    var keyOrdering: Bool { keyLimit == 1 }
    private(set) var frontier: Int64
    private(set) var slots: Deque<Slot> = []
    private var waiting: Deque<Int64> = []
    private var blocked: [UInt64: Deque<Int64>] = [:]
    private var keysInFlight: [UInt64: Int] = [:]
    /// Lease timers, pending until their deadline (lazily: see `LeaseTimer`). Leases are
    /// mostly made in deadline order — now plus the group's lease, batch after batch — and
    /// those queue in `timersInOrder` (an append); a deadline before the last queued one
    /// (an extension by more than the lease, a lease setting made shorter) goes to the heap.
    /// The earlier front of the two comes up first.
    private var timersInOrder: Deque<LeaseTimer> = []
    private var timersOutOfOrder = Heap<LeaseTimer>()
    /// Waiting messages held back until a time (their key's rate, or their due time when
    /// fired ahead of it): out of `waiting` until then.
    private var held = Heap<LeaseTimer>()
    private(set) var inFlight = 0
    private(set) var ackedAbove = 0
    private var nextLease: UInt32 = 1

    var readEnd: Int64 { frontier + Int64(slots.count) }
    var span: Int { slots.count }
    /// Slots waiting for delivery (not counting those blocked behind a key).
    var waitingCount: Int { slots.reduce(0) { $0 + ($1.state == .waiting ? 1 : 0) } }

    /// Bytes of memory per tracked offset.
    static let bytesPerSlot = MemoryLayout<Slot>.stride
    static let bytesPerTimer = MemoryLayout<LeaseTimer>.stride

    /// A window restored from the committed position: offsets between the frontier and the
    /// highest acked one that are not acked wait for delivery.
    init(frontier: Int64, acked: [Int64] = [], keyLimit: Int? = nil) {
        precondition(keyLimit.map { $0 >= 1 } ?? true, "a key limit is at least 1")
        self.frontier = frontier
        self.keyLimit = keyLimit
        for offset in acked.sorted() where offset >= readEnd || (offset >= frontier && slots[Int(offset - frontier)].state != .acked) {
            admit(through: offset, attempt: 1)
            markAcked(offset)
        }
    }

    func slot(_ offset: Int64) -> Slot? {
        guard offset >= frontier, offset < readEnd else { return nil }
        return slots[Int(offset - frontier)]
    }

    /// Everything below `start` is gone from the log (retention): it counts as acked.
    mutating func skip(to start: Int64) {
        guard start > frontier else { return }
        // Offsets gone from the window: their leases end (releasing their keys, so what
        // waits behind them goes on), then they count as acked.
        var freed = Set<UInt64>()
        while frontier < start, let s = slots.first {
            if s.state == .leased {
                endLease(frontier, requeued: true)
                if s.keyed { freed.insert(s.keyHash) }
            } else if s.holdsKey {
                freed.insert(s.keyHash)
            }
            if s.state == .acked { ackedAbove -= 1 }
            slots.removeFirst()
            frontier += 1
        }
        frontier = max(frontier, start)  // past the window: nothing to walk
        // Acked offsets just above the new start count too: the frontier stops only at an
        // offset not acked.
        passAckedPrefix()
        for key in freed { unblockNext(key) }
    }

    /// Takes every offset up to `offset` into the window, waiting, as if read (a message
    /// aborted before the group read it: its slot is then acked). They are delivered by
    /// `nextWaiting`, in offset order. `attempt`: the deliveries each is taken to have had
    /// (a window restored from a snapshot cannot tell, and counts one).
    mutating func admit(through offset: Int64, attempt: UInt16 = 0) {
        while readEnd <= offset {
            waiting.append(readEnd)
            slots.append(Slot(state: .waiting, attempt: attempt))
        }
    }

    /// Takes the message at `readEnd` (just read from the log) into the window, waiting.
    mutating func admitNext() -> Int64 {
        let offset = readEnd
        slots.append(Slot(state: .waiting))
        return offset
    }

    /// The next offset waiting for redelivery, if any (the caller then reads it and leases it).
    mutating func nextWaiting() -> Int64? {
        while let offset = waiting.popFirst() {
            if let s = slot(offset), s.state == .waiting { return offset }
        }
        return nil
    }

    /// Puts an offset taken by `nextWaiting` back at the front (the caller could not deliver it).
    mutating func putBack(_ offset: Int64) { waiting.prepend(offset) }

    /// Holds a waiting message out of delivery until `until` (its key has no token yet, or
    /// it was fired ahead of its due time): it is not looked at again before then.
    mutating func hold(_ offset: Int64, until: Int64) {
        precondition(slot(offset)?.state == .waiting, "only a waiting message is held back")
        held.insert(LeaseTimer(deadline: until, offset: offset, lease: 0))
    }

    /// Messages held back until `now` or before wait for delivery again, first in line in
    /// offset order.
    mutating func releaseHeld(now: Int64) {
        guard let first = held.min, first.deadline <= now else { return }
        var due: [Int64] = []
        while let t = held.min, t.deadline <= now {
            held.removeMin()
            due.append(t.offset)
        }
        for offset in due.sorted().reversed() where slot(offset)?.state == .waiting { waiting.prepend(offset) }
    }

    /// Leases a waiting offset to `member` until `deadline`: nil when key ordering holds it
    /// back (another message with its key is in flight; it is delivered once that one is
    /// done). Returns the lease serial and the attempt number (1 for the first delivery).
    mutating func lease(_ offset: Int64, keyHash: UInt64?, member: UInt64, deadline: Int64) -> (lease: UInt32, attempt: Int)? {
        let i = Int(offset - frontier)
        precondition(slots[i].state == .waiting, "only a waiting offset can be leased")
        if let keyHash {
            slots[i].keyed = true
            slots[i].keyHash = keyHash
            if let keyLimit, keysInFlight[keyHash, default: 0] >= keyLimit {
                blocked[keyHash, default: []].append(offset)
                return nil
            }
        }
        let serial = nextLease
        nextLease &+= 1
        slots[i].state = .leased
        slots[i].holdsKey = false
        slots[i].attempt &+= 1
        slots[i].lease = serial
        slots[i].member = member
        slots[i].deadline = deadline
        inFlight += 1
        if keyLimit != nil, let keyHash { keysInFlight[keyHash, default: 0] += 1 }
        addTimer(LeaseTimer(deadline: deadline, offset: offset, lease: serial))
        return (serial, Int(slots[i].attempt))
    }

    /// Checks that `lease` is the live lease on `offset`.
    func check(_ offset: Int64, lease: UInt32) throws -> Slot {
        guard offset >= frontier else { throw Refusal.alreadyAcked }
        guard let s = slot(offset), s.attempt > 0 || s.state == .acked else { throw Refusal.unknown }
        if s.state == .acked { throw Refusal.alreadyAcked }
        guard s.lease == lease, s.state == .leased else { throw lease > s.lease || lease == 0 ? Refusal.unknown : Refusal.expired }
        return s
    }

    /// Acks a leased message. Returns true when the frontier moved.
    @discardableResult
    mutating func ack(_ offset: Int64, lease: UInt32) throws -> Bool {
        _ = try check(offset, lease: lease)
        endLease(offset)
        return markAcked(offset)
    }

    /// Acks an offset whatever its state (journal replay; a parked message moved away).
    @discardableResult
    mutating func markAcked(_ offset: Int64) -> Bool {
        guard let s = slot(offset), s.state != .acked else { return false }
        if s.state == .leased { endLease(offset) }
        slots[Int(offset - frontier)].state = .acked
        ackedAbove += 1
        let moved = passAckedPrefix()
        // It was first of its key while waiting again; now that it is gone (dead-lettered
        // after its lease expired), the next one may go.
        if s.holdsKey { unblockNext(s.keyHash) }
        return moved
    }

    /// Ends a lease without acking: the message waits for delivery again (a nack without
    /// delay, a revoked partition).
    mutating func release(_ offset: Int64, lease: UInt32) throws {
        _ = try check(offset, lease: lease)
        endLease(offset, requeued: true)
        setWaiting(offset)
    }

    /// Ends a lease and holds the message out of delivery while it is moved elsewhere.
    mutating func park(_ offset: Int64, lease: UInt32) throws -> Slot {
        let s = try check(offset, lease: lease)
        endLease(offset)
        slots[Int(offset - frontier)].state = .parked
        return s
    }

    /// Parks an offset whose lease has already ended (expired past its attempts).
    mutating func parkWaiting(_ offset: Int64) {
        guard let s = slot(offset), s.state == .waiting else { return }
        slots[Int(offset - frontier)].state = .parked
    }

    /// A parked message that could not be moved goes back to waiting.
    mutating func unpark(_ offset: Int64) {
        guard let s = slot(offset), s.state == .parked else { return }
        setWaiting(offset)
    }

    mutating func extend(_ offset: Int64, lease: UInt32, to deadline: Int64) throws {
        _ = try check(offset, lease: lease)
        let i = Int(offset - frontier)
        guard deadline > slots[i].deadline else { return }
        slots[i].deadline = deadline
        addTimer(LeaseTimer(deadline: deadline, offset: offset, lease: lease))
    }

    private mutating func addTimer(_ t: LeaseTimer) {
        if let last = timersInOrder.last, t.deadline < last.deadline {
            timersOutOfOrder.insert(t)
        } else {
            timersInOrder.append(t)
        }
    }

    /// The earliest pending timer if its deadline is at or before `now`, taken out.
    private mutating func takeTimer(dueBy now: Int64) -> LeaseTimer? {
        let queued = timersInOrder.first
        let heaped = timersOutOfOrder.min
        if let q = queued, q.deadline <= now, heaped.map({ q.deadline <= $0.deadline }) ?? true { return timersInOrder.removeFirst() }
        if let h = heaped, h.deadline <= now { return timersOutOfOrder.removeMin() }
        return nil
    }

    /// Leases whose deadline is at or before `now` end; their messages wait again.
    /// Returns them with the deliveries they had.
    mutating func expire(now: Int64) -> [(offset: Int64, attempt: Int)] {
        var out: [(Int64, Int)] = []
        while let t = takeTimer(dueBy: now) {
            guard let s = slot(t.offset), s.state == .leased, s.lease == t.lease, s.deadline == t.deadline else { continue }
            endLease(t.offset, requeued: true)
            setWaiting(t.offset)
            out.append((t.offset, Int(s.attempt)))
        }
        return out
    }

    /// The earliest lease deadline still pending (lazy timers may make it early).
    var nextDeadline: Int64? {
        let queued = timersInOrder.first?.deadline, heaped = timersOutOfOrder.min?.deadline
        guard let queued, let heaped else { return queued ?? heaped }
        return min(queued, heaped)
    }

    /// Ends every lease (the partition moved to another member): all wait again.
    mutating func revokeAll() -> Int {
        var count = 0
        for i in slots.indices where slots[i].state == .leased {
            let offset = frontier + Int64(i)
            endLease(offset, requeued: true)
            setWaiting(offset)
            count += 1
        }
        timersInOrder = []
        timersOutOfOrder = Heap()
        return count
    }

    /// Ends every lease held by one of `members` (they timed out): the messages wait again,
    /// each delivery counted as an attempt. Returns them with the deliveries they had.
    mutating func release(members: Set<UInt64>) -> [(offset: Int64, attempt: Int)] {
        guard inFlight > 0 else { return [] }
        var out: [(Int64, Int)] = []
        for i in slots.indices where slots[i].state == .leased && members.contains(slots[i].member) {
            let offset = frontier + Int64(i)
            endLease(offset, requeued: true)
            setWaiting(offset)
            out.append((offset, Int(slots[i].attempt)))
        }
        return out
    }

    /// Hands back one lease (the member did not start on the message): it waits again at
    /// once, and the delivery does not count as an attempt.
    mutating func handBack(_ offset: Int64, lease: UInt32) throws {
        _ = try check(offset, lease: lease)
        endLease(offset, requeued: true)
        let i = Int(offset - frontier)
        assert(slots[i].attempt > 0, "a leased message was delivered at least once")
        slots[i].attempt -= 1
        setWaiting(offset)
    }

    /// Hands back every lease `member` holds (it is leaving): the messages wait again, and
    /// the delivery does not count as an attempt — the member gave them back unprocessed,
    /// so leaving never moves a message towards its dead letter. Returns how many.
    mutating func handBack(member: UInt64) -> Int {
        var count = 0
        for i in slots.indices where slots[i].state == .leased && slots[i].member == member {
            let offset = frontier + Int64(i)
            endLease(offset, requeued: true)
            assert(slots[i].attempt > 0, "a leased message was delivered at least once")
            slots[i].attempt -= 1
            setWaiting(offset)
            count += 1
        }
        return count
    }

    /// Offsets acked above the frontier (for the snapshot).
    var ackedOffsets: [Int64] {
        slots.indices.compactMap { slots[$0].state == .acked ? frontier + Int64($0) : nil }
    }

    /// Moves the frontier over the acked slots at the front. Returns true when it moved.
    @discardableResult
    private mutating func passAckedPrefix() -> Bool {
        var moved = false
        while let first = slots.first, first.state == .acked {
            slots.removeFirst()
            frontier += 1
            ackedAbove -= 1
            moved = true
        }
        return moved
    }

    private mutating func setWaiting(_ offset: Int64) {
        slots[Int(offset - frontier)].state = .waiting
        waiting.append(offset)
    }

    /// Changes the key limit of a window in use (the group's settings changed): the keys in
    /// flight are counted again from the leased slots, and every message held back behind
    /// a key goes back to waiting (each is checked against the new limit when it is
    /// leased). Messages leased before may exceed a lower limit until they are done.
    mutating func setKeyLimit(_ limit: Int?) {
        precondition(limit.map { $0 >= 1 } ?? true, "a key limit is at least 1")
        guard limit != keyLimit else { return }
        keyLimit = limit
        keysInFlight = [:]
        for i in slots.indices {
            slots[i].holdsKey = false
            if limit != nil, slots[i].state == .leased, slots[i].keyed { keysInFlight[slots[i].keyHash, default: 0] += 1 }
        }
        let held = blocked.values.flatMap { $0 }.sorted()
        blocked = [:]
        for offset in held.reversed() where slot(offset)?.state == .waiting { waiting.prepend(offset) }
    }

    /// Traps unless the counters agree with the slots: `inFlight` counts the leased slots,
    /// `ackedAbove` the acked ones, the frontier stops at the first slot not acked, and with
    /// a key limit exactly the keys of leased slots are in flight, each at most the limit's
    /// number of times. O(window): tests call it after every step of their random models.
    func checkInvariants() {
        var leased = 0
        var acked = 0
        var keys: [UInt64: Int] = [:]
        for s in slots {
            switch s.state {
            case .leased:
                leased += 1
                if keyLimit != nil && s.keyed { keys[s.keyHash, default: 0] += 1 }
            case .acked:
                acked += 1
            case .waiting, .parked:
                break
            }
        }
        precondition(leased == inFlight, "\(leased) slots leased, inFlight says \(inFlight)")
        precondition(acked == ackedAbove, "\(acked) slots acked, ackedAbove says \(ackedAbove)")
        precondition(slots.first?.state != .acked, "the frontier stopped at an acked offset")
        if let keyLimit {
            precondition(keys == keysInFlight, "keys in flight \(keysInFlight) are not the leased slots' \(keys)")
            precondition(keys.values.allSatisfy { $0 <= keyLimit }, "more than \(keyLimit) messages of one key in flight")
        }
    }

    /// Messages with this key leased from this window (0 without a key limit).
    func keyCount(_ keyHash: UInt64) -> Int { keysInFlight[keyHash, default: 0] }

    /// Bookkeeping of a lease that ends (acked, released, parked, expired). `requeued`: the
    /// message waits for delivery again (released, expired, revoked); under key ordering it
    /// stays first of its key and the next one held back behind it stays held back. Above
    /// a limit of 1 there is no order to keep: the next one held back may go.
    private mutating func endLease(_ offset: Int64, requeued: Bool = false) {
        let s = slots[Int(offset - frontier)]
        guard s.state == .leased else { return }
        inFlight -= 1
        slots[Int(offset - frontier)].state = .waiting  // the caller sets the final state
        guard let keyLimit, s.keyed else { return }
        let left = keysInFlight[s.keyHash, default: 1] - 1
        keysInFlight[s.keyHash] = left > 0 ? left : nil
        if requeued && keyLimit == 1 {
            slots[Int(offset - frontier)].holdsKey = true
            return
        }
        unblockNext(s.keyHash)
    }

    /// The next message held back behind `keyHash` is first in line now (once fewer than
    /// the limit of that key are leased). Offsets acked or skipped while held back are
    /// passed over.
    private mutating func unblockNext(_ keyHash: UInt64) {
        guard keysInFlight[keyHash, default: 0] < (keyLimit ?? .max), var queue = blocked[keyHash] else { return }
        while let next = queue.popFirst() {
            if let s = slot(next), s.state == .waiting {
                waiting.prepend(next)
                break
            }
        }
        blocked[keyHash] = queue.isEmpty ? nil : queue
    }
}
