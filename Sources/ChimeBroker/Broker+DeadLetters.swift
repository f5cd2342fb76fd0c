/// Dead letters chosen one by one: re-driven to their group, or deleted. Either way the
/// letter is acked in the group's re-drive reader (`__redrive.<group>`), whose position
/// in the dead-letter topic is what "still dead" means: listings skip what it acked.
extension Broker {
    public enum DeadLetterAction: Sendable {
        /// Back to the group, through its retry path, attempts reset (as `redrive`).
        case redrive
        /// Gone from the listing, never delivered again.
        case delete
    }

    /// Applies `action` to each dead letter of `group` named by `ids` (ids of its dead-letter
    /// topic's messages, as listings give them). Returns how many it applied to; a letter
    /// already re-driven or deleted is skipped. An id of another topic is `invalidArgument`.
    public func settleDeadLetters(group name: String, _ ids: [MessageID], _ action: DeadLetterAction) async throws -> Int {
        let g = try group(name)
        let dlq = ConsumerGroup.deadLetterTopic(of: name)
        guard let info = listTopics().first(where: { $0.name == dlq }) else {
            throw BrokerError(.unknownMessage, "group \(name) has no dead letters")
        }
        for id in ids where id.topicID != info.id || id.kind != .ready {
            throw BrokerError(.invalidArgument, "\(id) is not a dead letter of \(name) (those are \(info.id)-<partition>-r<offset>)")
        }
        // The reader must have read the topic for its acks to count.
        let reader = "__redrive." + name
        let membership = try await join(group: reader, member: "redrive", topics: [dlq])
        try await leave(group: reader, member: membership.memberID)
        var applied = 0
        for id in ids {
            guard let letter = try await peek(topic: dlq, partition: id.partition, from: id.value, group: reader, max: 1).first, letter.offset == id.value else {
                continue  // re-driven or deleted already
            }
            if action == .redrive { try await g.redrive(letter) }
            // Acked in the reader only (another group reading the dead-letter topic, an
            // alerting consumer say, keeps its own position).
            _ = try await group(reader).abort(
                PartitionKey(topicID: id.topicID, partition: id.partition), readyOffset: id.value, reason: action == .redrive ? "re-driven" : "deleted")
            applied += 1
        }
        return applied
    }
}
