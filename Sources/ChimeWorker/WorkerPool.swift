/// A pool: a set of labels (topics) served in one shared group, with at most `concurrency`
/// jobs running at once and up to `prefetch` more fetched and waiting. Labels and pools are
/// many-to-many: one worker can run several pools, and one topic can be served by several
/// pools (each pool its own group, or the same group for one queue shared between pools).
public struct WorkerPool: Sendable {
    public var group: String
    public var topics: [String]
    public var concurrency: Int
    public var prefetch: Int
    /// Whether a slot waits for the broker to record a job's ack before it takes the next
    /// message: then a crash of this process runs again only the jobs it was running (at
    /// most `concurrency`), never one that finished; otherwise also those that finished
    /// while their acks were on their way (a round trip's worth).
    public var durableAcks: Bool

    /// `prefetch` defaults to `concurrency`: a job is ready when a slot frees up, and no more
    /// than that waits in this process while other workers may be idle.
    public init(group: String, topics: [String], concurrency: Int = 8, prefetch: Int? = nil, durableAcks: Bool = false) {
        precondition(!topics.isEmpty, "a pool serves at least one topic")
        precondition(concurrency >= 1, "a pool runs at least one job at a time")
        self.group = group
        self.topics = topics
        self.concurrency = concurrency
        self.prefetch = max(1, prefetch ?? concurrency)
        self.durableAcks = durableAcks
    }
}
