import ChimeBroker
import ChimeProtocol

/// Whether the connection's token grants a request on the broker port (`AccessGrant`):
/// refused with `forbidden` (129) and nothing done, the connection kept. Which scope each
/// opcode needs is in docs/formats.md ("Scopes").
struct RequestAccess: Sendable {
    let grant: AccessGrant
    let broker: Broker

    /// `scope` on `topic` (nil: on what belongs to no topic, which a grant limited to
    /// topic patterns never reaches).
    func require(_ scope: AccessGrant.Scope, topic: String?) throws {
        guard grant.allows(scope, topic: topic) else { throw refusal(scope, topic.map { "topic \($0)" } ?? "resources of no topic") }
    }

    /// `scope` on each of `topics`.
    func require(_ scope: AccessGrant.Scope, topics: [String]) throws {
        for t in topics { try require(scope, topic: t) }
    }

    /// `scope` on the topic of a message (a message of a topic that no longer exists needs
    /// a grant without patterns; the engine then says it is unknown).
    func require(_ scope: AccessGrant.Scope, message id: MessageID) throws {
        try require(scope, topicID: id.topicID)
    }

    func require(_ scope: AccessGrant.Scope, topicID: UInt32) throws {
        try require(scope, topic: broker.topicName(id: topicID))
    }

    /// `scope` alone: for what a membership does (fetch, ack, heartbeat…), whose topics were
    /// checked when it joined.
    func require(_ scope: AccessGrant.Scope) throws {
        guard scope <= grant.scope else { throw refusal(scope, "this server") }
    }

    /// Whether the grant sees this topic (listings leave out the others).
    func sees(_ topic: String) -> Bool { grant.sees(topic) }

    private func refusal(_ scope: AccessGrant.Scope, _ what: String) -> ErrorReply {
        ErrorReply(.forbidden, message: "this connection's token (\(grant)) does not grant \(scope) on \(what)")
    }
}
