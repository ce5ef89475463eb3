import VigilContract

/// Input deleted before it was read: offsets `from` up to `to` (excluded) of a partition.
struct InputGap: Sendable {
    let topic: String
    let partition: Int32
    let from: Int64
    let to: Int64
    let stop: Bool
    let detectedAt: Instant

    /// The audit log's note.
    var note: [UInt8] {
        var w = JSONWriter()
        w.raw("{"); w.key("kind"); w.string("input-gap")
        w.raw(","); w.key("topic"); w.string(topic)
        w.raw(","); w.key("partition"); w.int(Int64(partition))
        w.raw(","); w.key("from"); w.int(from)
        w.raw(","); w.key("to"); w.int(to)
        w.raw(","); w.key("action"); w.string(stop ? "stop" : "record-and-continue")
        w.raw(","); w.key("detected_at"); w.string(detectedAt.description)
        w.raw("}")
        return w.bytes
    }

    var logLine: String {
        "input gap: \(topic)[\(partition)] offsets \(from) to \(to - 1) were deleted before they were read (retention or an outage outlasted the lag); "
            + (stop ? "partition stopped: restart with --on-input-gap record-and-continue to read on from \(to)" : "reading on from \(to)")
    }
}
