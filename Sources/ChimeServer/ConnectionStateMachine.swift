import ChimeProtocol
import DequeModule

/// What one client connection may do next, as a value: events in (a frame read, a reply
/// ready, a reply written, the socket's writability, the hello deadline, drain, the
/// connection gone), actions out (pass a read on, start a request, write, fail, close,
/// cancel). No I/O here: `ConnectionHandler` maps channel events in and runs the actions.
///
/// A connection goes awaitingHello → open → draining → closed; any of the first three
/// may go to closing (an error frame is going out, or a close was asked for) and then to
/// closed. Before the hello only a small frame is accepted (`frameLimit`).
///
/// Budgets: a request counts against the connection from when it is read until its reply
/// has been written to the socket (not merely handed to the channel), with its own bytes
/// and its reply's. Past a budget, or while the socket takes no more, requests already
/// read wait in order (`held`) and no read is passed on, so a client that pipelines and
/// never reads holds at most the budget in the server.
struct ConnectionStateMachine {
    struct Limits: Sendable, Equatable {
        var maxHelloBytes: Int
        var maxFrameBytes: Int
        var maxInFlight: Int
        var maxBufferedBytes: Int
        var tokens: TokenTable

        init(maxHelloBytes: Int, maxFrameBytes: Int, maxInFlight: Int, maxBufferedBytes: Int, tokens: TokenTable) {
            precondition(maxHelloBytes > 0 && maxFrameBytes > 0 && maxInFlight > 0 && maxBufferedBytes > 0, "every limit admits something")
            self.maxHelloBytes = maxHelloBytes
            self.maxFrameBytes = maxFrameBytes
            self.maxInFlight = maxInFlight
            self.maxBufferedBytes = maxBufferedBytes
            self.tokens = tokens
        }

        init(_ options: ServerOptions) {
            self.init(
                maxHelloBytes: options.maxHelloBytes, maxFrameBytes: options.maxFrameBytes, maxInFlight: options.maxInFlightPerConnection,
                maxBufferedBytes: options.maxBufferedBytesPerConnection, tokens: options.tokenTable)
        }
    }

    /// One request on this connection, numbered in the order read.
    struct RequestID: Hashable, Sendable, CustomStringConvertible {
        let value: UInt64
        var description: String { "#\(value)" }
    }

    struct Request: Equatable, Sendable {
        let id: RequestID
        let frame: Frame
        /// The protocol version the connection chose: how the payload is laid out.
        let version: UInt16
    }

    /// An error frame to send before closing the connection.
    struct Failure: Error, Equatable, Sendable {
        let code: WireErrorCode
        let message: String
        let opcode: Opcode
        let correlationID: UInt32
    }

    /// A hello that passed: its reply is due, and the frame limit is now `maxFrameBytes`.
    struct HelloAccepted: Equatable, Sendable {
        let version: UInt16
        let correlationID: UInt32
        let client: String
        /// What the hello's token grants (everything on a server without tokens).
        let grant: AccessGrant
    }

    enum Action: Equatable, Sendable {
        /// Pass the channel's read request on: the connection may take more bytes.
        case read
        /// Run this request (off the event loop); its reply comes back as `responseReady`.
        case start(Request)
        /// Answer the hello (once the server has a slot for an authenticated connection).
        case acceptHello(HelloAccepted)
        /// Write this reply; its completion comes back as `writeCompleted`.
        case write(RequestID, Frame)
        /// Write an error frame, then close.
        case fail(Failure)
        case close
        /// The connection is gone: stop these requests' work.
        case cancel([RequestID])
    }

    /// A started request: its bytes, and its reply's once it is ready (nil before).
    struct Usage: Equatable {
        let requestBytes: Int
        var replyBytes: Int?
    }

    /// The requests of a connection and whether its socket takes more.
    struct Traffic {
        var writable = true
        /// The channel asked to read while reading was not allowed; passed on when it is.
        var readHeld = false
        /// Started, reply not yet written.
        var running: [RequestID: Usage] = [:]
        /// Read, not started: over a budget or not writable when they came.
        var held: Deque<Frame> = []
        var requestBytes = 0
        var unwrittenReplyBytes = 0
        var nextID: UInt64 = 0
    }

    enum State {
        case awaitingHello(Traffic)
        case open(version: UInt16, Traffic)
        case draining(version: UInt16, Traffic)
        /// An error frame or a close is under way; replies still coming are dropped.
        case closing(Traffic)
        case closed
        /// Only while an event mutates the traffic in place (no copy of its collections).
        case modifying
    }

    let limits: Limits
    private(set) var state: State = .awaitingHello(Traffic())

    init(limits: Limits) {
        self.limits = limits
    }

    /// The largest frame the decoder may accept now.
    var frameLimit: Int {
        switch state {
        case .awaitingHello: limits.maxHelloBytes
        default: limits.maxFrameBytes
        }
    }

    /// Bytes of replies handed to the channel and not yet written to the socket.
    var unwrittenReplyBytes: Int {
        switch state {
        case .awaitingHello(let t), .open(_, let t), .draining(_, let t), .closing(let t): t.unwrittenReplyBytes
        case .closed, .modifying: 0
        }
    }

    var isAuthenticated: Bool {
        switch state {
        case .open, .draining: true
        default: false
        }
    }

    // MARK: - Events

    /// The channel wants to read: true if the read may be passed on now. Otherwise it is
    /// remembered and passed on (a `.read` action) once reading is allowed again.
    mutating func readRequested() -> Bool {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(var t):
            guard t.writable else {
                t.readHeld = true
                state = .awaitingHello(t)
                return false
            }
            return true
        case .open(let version, var t):
            state = .modifying
            let allowed = canRead(t)
            if !allowed { t.readHeld = true }
            state = .open(version: version, t)
            return allowed
        case .draining, .closing, .closed:
            // Nothing more is read: draining answers only what it has read.
            return false
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    mutating func frameRead(_ frame: Frame) -> Action? {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(let t):
            switch authenticate(frame) {
            case .success(let accepted):
                state = .open(version: accepted.version, t)
                return .acceptHello(accepted)
            case .failure(let failure):
                state = .closing(t)
                return .fail(failure)
            }
        case .open(let version, var t):
            if frame.isResponse {
                state = .closing(t)
                return .fail(Failure(.badFlags, "a client sends requests, not responses", frame))
            }
            // An opcode newer than the connection's version is unknown on it.
            guard version >= frame.opcode.sinceVersion else {
                state = .closing(t)
                return .fail(
                    Failure(.unknownOpcode, "opcode \(frame.opcode.rawValue) needs protocol version \(frame.opcode.sinceVersion); this connection chose \(version)", frame))
            }
            state = .modifying
            defer { state = .open(version: version, t) }
            // Behind held requests, over budget or not writable: wait, in order.
            guard t.held.isEmpty && canStart(t) else {
                t.held.append(frame)
                return nil
            }
            return .start(start(frame, version, &t))
        case .draining, .closing, .closed:
            // Frames already buffered when draining began are not started: the client sees
            // the connection close and sends them again elsewhere (or later).
            return nil
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// The work of a request is done; its reply is to be written.
    mutating func responseReady(_ id: RequestID, _ response: Frame) -> Action? {
        defer { checkInvariants() }
        switch state {
        case .open(let version, var t):
            state = .modifying
            record(response, for: id, &t)
            state = .open(version: version, t)
            return .write(id, response)
        case .draining(let version, var t):
            state = .modifying
            record(response, for: id, &t)
            state = .draining(version: version, t)
            return .write(id, response)
        case .closing(var t):
            // Nobody to answer: the connection is closing.
            state = .modifying
            guard let usage = t.running.removeValue(forKey: id), usage.replyBytes == nil else {
                preconditionFailure("a reply for request \(id), which is not waiting for one")
            }
            t.requestBytes -= usage.requestBytes
            state = .closing(t)
            return nil
        case .closed:
            return nil
        case .awaitingHello:
            preconditionFailure("a reply before the hello was accepted: no request runs then")
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// The reply of `id` has been written to the socket, or could not be (the connection
    /// is going): either way it no longer counts against the connection.
    mutating func writeCompleted(_ id: RequestID) -> [Action] {
        defer { checkInvariants() }
        switch state {
        case .open(let version, var t):
            state = .modifying
            release(id, &t)
            var actions = startHeld(version, &t)
            if t.readHeld && canRead(t) {
                t.readHeld = false
                actions.append(.read)
            }
            state = .open(version: version, t)
            return actions
        case .draining(let version, var t):
            state = .modifying
            release(id, &t)
            return drainStep(version, &t)
        case .closing(var t):
            state = .modifying
            if t.running[id] != nil { release(id, &t) }
            state = .closing(t)
            return []
        case .closed:
            return []
        case .awaitingHello:
            preconditionFailure("a write completed before the hello was accepted: no request runs then")
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    mutating func writabilityChanged(_ writable: Bool) -> [Action] {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(var t):
            t.writable = writable
            let read = writable && t.readHeld
            if read { t.readHeld = false }
            state = .awaitingHello(t)
            return read ? [.read] : []
        case .open(let version, var t):
            state = .modifying
            t.writable = writable
            var actions = startHeld(version, &t)
            if t.readHeld && canRead(t) {
                t.readHeld = false
                actions.append(.read)
            }
            state = .open(version: version, t)
            return actions
        case .draining(let version, var t):
            state = .modifying
            t.writable = writable
            return drainStep(version, &t)
        case .closing, .closed:
            return []
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// The hello deadline passed: a connection still without an accepted hello goes.
    mutating func helloDeadlinePassed(afterMilliseconds timeout: Int64) -> Action? {
        defer { checkInvariants() }
        guard case .awaitingHello(let t) = state else { return nil }
        state = .closing(t)
        return .fail(Failure(code: .unauthenticated, message: "no hello within \(timeout) ms", opcode: .hello, correlationID: 0))
    }

    /// A hello was accepted but the server has no slot for another authenticated
    /// connection: closed without an answer, as a connection over the limit always was.
    mutating func connectionLimitReached() -> Action? {
        defer { checkInvariants() }
        switch state {
        case .open(_, let t):
            state = .closing(t)
            return .close
        default:
            preconditionFailure("the connection limit is checked right after a hello is accepted")
        }
    }

    /// The server is shutting down: read nothing more, answer what was read, close.
    mutating func drain() -> [Action] {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(let t):
            state = .closing(t)
            return [.close]
        case .open(let version, var t):
            state = .modifying
            t.readHeld = false
            return drainStep(version, &t)
        case .draining, .closing, .closed:
            return []
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// The frame decoder refused the stream (too large, too short, unknown opcode or
    /// flags): answered on the connection-level opcode (hello), id 0, then closed.
    mutating func decoderFailed(_ error: ProtocolError) -> Action? {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(let t), .open(_, let t), .draining(_, let t):
            state = .closing(t)
            return .fail(Failure(code: error.code.wireCode, message: error.message, opcode: .hello, correlationID: 0))
        case .closing, .closed:
            return nil
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// Nothing came for the idle timeout.
    mutating func idleTimedOut() -> Action? {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(let t), .open(_, let t), .draining(_, let t):
            state = .closing(t)
            return .close
        case .closing, .closed:
            return nil
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    /// The connection is gone: the work of every request still running is cancelled (a
    /// waiting fetch must not lease messages to nobody).
    mutating func channelInactive() -> Action? {
        defer { checkInvariants() }
        switch state {
        case .awaitingHello(let t), .open(_, let t), .draining(_, let t), .closing(let t):
            state = .closed
            let waiting = t.running.filter { $0.value.replyBytes == nil }.keys.sorted { $0.value < $1.value }
            return waiting.isEmpty ? nil : .cancel(waiting)
        case .closed:
            return nil
        case .modifying:
            preconditionFailure("event while modifying")
        }
    }

    // MARK: - Budgets

    private func overBudget(_ t: Traffic) -> Bool {
        t.running.count >= limits.maxInFlight || t.requestBytes + t.unwrittenReplyBytes >= limits.maxBufferedBytes
    }

    /// One request is always taken when none runs, whatever its size.
    private func canStart(_ t: Traffic) -> Bool {
        t.writable && (t.running.isEmpty || !overBudget(t))
    }

    private func canRead(_ t: Traffic) -> Bool {
        t.writable && t.held.isEmpty && !overBudget(t)
    }

    private func start(_ frame: Frame, _ version: UInt16, _ t: inout Traffic) -> Request {
        let id = RequestID(value: t.nextID)
        t.nextID += 1
        let bytes = frame.payload.readableBytes
        t.running[id] = Usage(requestBytes: bytes, replyBytes: nil)
        t.requestBytes += bytes
        return Request(id: id, frame: frame, version: version)
    }

    private func startHeld(_ version: UInt16, _ t: inout Traffic) -> [Action] {
        var actions: [Action] = []
        while !t.held.isEmpty && canStart(t) {
            actions.append(.start(start(t.held.removeFirst(), version, &t)))
        }
        return actions
    }

    private func record(_ response: Frame, for id: RequestID, _ t: inout Traffic) {
        guard let usage = t.running[id] else { preconditionFailure("a reply for request \(id), which is not running") }
        precondition(usage.replyBytes == nil, "a second reply for request \(id)")
        let bytes = Frame.headerSize + response.payload.readableBytes
        t.running[id]!.replyBytes = bytes
        t.unwrittenReplyBytes += bytes
    }

    private func release(_ id: RequestID, _ t: inout Traffic) {
        guard let usage = t.running.removeValue(forKey: id), let reply = usage.replyBytes else {
            preconditionFailure("a write completed for request \(id), whose reply was never written")
        }
        t.requestBytes -= usage.requestBytes
        t.unwrittenReplyBytes -= reply
        assert(t.requestBytes >= 0 && t.unwrittenReplyBytes >= 0, "released more than was counted")
    }

    /// Draining: held requests were read, so they are answered too; when nothing is left
    /// the connection closes. Sets the state.
    private mutating func drainStep(_ version: UInt16, _ t: inout Traffic) -> [Action] {
        var actions = startHeld(version, &t)
        if t.running.isEmpty && t.held.isEmpty {
            state = .closing(t)
            actions.append(.close)
        } else {
            state = .draining(version: version, t)
        }
        return actions
    }

    // MARK: - Hello

    private func authenticate(_ frame: Frame) -> Result<HelloAccepted, Failure> {
        guard !frame.isResponse else { return .failure(Failure(.badFlags, "a client sends requests, not responses", frame)) }
        guard frame.opcode == .hello else { return .failure(Failure(.unauthenticated, "the first frame must be a hello", frame)) }
        let hello: Hello
        do {
            hello = try Hello(payload: frame.payload)
        } catch let error as ProtocolError {
            return .failure(Failure(error.code.wireCode, error.message, frame))
        } catch {
            return .failure(Failure(.malformed, "\(error)", frame))
        }
        let version = min(hello.maxVersion, ProtocolVersion.current)
        guard version >= max(hello.minVersion, ProtocolVersion.oldest) else {
            return .failure(
                Failure(
                    .unsupportedVersion,
                    "this server speaks versions \(ProtocolVersion.oldest)...\(ProtocolVersion.current), the client \(hello.minVersion)...\(hello.maxVersion)", frame))
        }
        var grant = AccessGrant.everything
        if !limits.tokens.isOpen {
            // Every configured token is compared, each in constant time.
            guard let matched = limits.tokens.grant(for: hello.token ?? []) else {
                return .failure(Failure(.unauthenticated, "wrong or missing token", frame))
            }
            grant = matched
        }
        return .success(HelloAccepted(version: version, correlationID: frame.correlationID, client: hello.client, grant: grant))
    }

    // MARK: - Invariants

    /// Checked after every event in debug builds.
    func checkInvariants() {
        #if DEBUG
        switch state {
        case .awaitingHello(let t):
            precondition(t.running.isEmpty && t.held.isEmpty, "no request before the hello")
            precondition(!t.readHeld || !t.writable, "a read is held only while reading is not allowed")
            check(t)
        case .open(_, let t):
            check(t)
            precondition(t.held.isEmpty || !canStart(t), "a held request that could start")
            precondition(!t.readHeld || !canRead(t), "a read is held only while reading is not allowed")
        case .draining(_, let t):
            check(t)
            precondition(t.held.isEmpty || !canStart(t), "a held request that could start")
            precondition(!t.running.isEmpty || !t.held.isEmpty, "a drained connection is closing")
        case .closing(let t):
            check(t)
        case .closed:
            break
        case .modifying:
            preconditionFailure("an event left the state being modified")
        }
        #endif
    }

    private func check(_ t: Traffic) {
        precondition(t.requestBytes == t.running.values.reduce(0) { $0 + $1.requestBytes }, "request bytes match the running requests")
        precondition(t.unwrittenReplyBytes == t.running.values.reduce(0) { $0 + ($1.replyBytes ?? 0) }, "reply bytes match the replies not written")
        precondition(t.running.count <= max(1, limits.maxInFlight), "at most maxInFlight requests run")
        precondition(t.running.keys.allSatisfy { $0.value < t.nextID }, "request ids are given in order")
    }
}

extension ConnectionStateMachine.Failure {
    fileprivate init(_ code: WireErrorCode, _ message: String, _ frame: Frame) {
        self.init(code: code, message: message, opcode: frame.opcode, correlationID: frame.correlationID)
    }
}
