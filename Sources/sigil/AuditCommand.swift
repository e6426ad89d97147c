import ArgumentParser
import Foundation
import SigilCore
import SigilStore
import Logging

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Read and verify the audit log (a chain of HMAC links under a key the KEK seals).",
        subcommands: [
            AuditListCommand.self, AuditVerifyCommand.self, AuditHeadCommand.self, AuditExportCommand.self,
            AuditTailCommand.self,
        ])
}

/// Filters shared by `list`, `export` and `tail`.
struct AuditFilterOptions: ParsableArguments {
    @Option(help: "Records at or after this time (RFC 3339).") var since: String?
    @Option(help: "Records before this time (RFC 3339).") var until: String?
    @Option(name: .customLong("spiffe-id"), help: "Only this subject SPIFFE ID.") var spiffeID: String?
    @Option(help: "Only this certificate serial (hex).") var serial: String?
    @Option(
        help:
            "Only this action (issue, deny, renew, init, prepare, activate, retire, rotate, taint, revoke, start, stop, …)."
    )
    var action: String?
    @Option(help: "Only success or failure.") var outcome: String?

    static let pageSize = 5000

    func query(afterSequence: Int64 = 0, limit: Int = AuditFilterOptions.pageSize) throws -> AuditQuery {
        func date(_ text: String?, _ flag: String) throws -> Date? {
            guard let text else { return nil }
            guard let date = Timestamp.parse(text) else {
                throw ValidationError("\(flag) \(text) is not an RFC 3339 time")
            }
            return date
        }
        var query = AuditQuery(
            since: try date(since, "--since"), until: try date(until, "--until"), subject: spiffeID, serial: serial,
            afterSequence: afterSequence,
            limit: limit)
        if let action {
            guard let parsed = AuditAction(rawValue: action) else {
                throw ValidationError("--action \(action) is not a known action")
            }
            query.action = parsed
        }
        if let outcome {
            guard let parsed = AuditOutcome(rawValue: outcome) else {
                throw ValidationError("--outcome must be success or failure")
            }
            query.outcome = parsed
        }
        return query
    }
}

func openAuditStore(_ options: DataDirectoryOption) async throws -> any SigilStoreBackend {
    try await options.openStore()
}

struct AuditListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List audit records (newest last).")
    @OptionGroup var data: DataDirectoryOption
    @OptionGroup var filter: AuditFilterOptions
    @Option(help: "At most this many records (the newest).") var limit: Int = 1000
    @Flag(help: "Print JSON lines.") var json = false

    func run() async throws {
        let store = try await openAuditStore(data)
        let records = try await store.newestAuditRecords(try filter.query(afterSequence: 0), count: limit).records
        if json {
            for record in records { print(record.jsonLine) }
            return
        }
        print(
            "SEQ".padding(8) + "TIME".padding(28) + "ACTION".padding(10) + "OUTCOME".padding(9) + "CODE".padding(22)
                + "SUBJECT / SERIAL / AUTHORITY / ACTOR")
        for record in records {
            let event = record.event
            let details = [
                event.subject, event.serial.map { "serial=\($0)" }, event.authorityID.map { "authority=\($0)" },
                "actor=\(event.actor)",
                event.reason.map { "reason=\"\($0)\"" },
            ].compactMap { $0 }.joined(separator: " ")
            // One line per record whatever a stored field holds: control characters never reach the terminal.
            print(
                SafeText.escapingControlCharacters(
                    String(record.sequence).padding(8) + AuditRecord.timestamp(event.time).padding(28)
                        + event.action.rawValue.padding(10)
                        + event.outcome.rawValue.padding(9) + (event.code ?? "-").padding(22) + details))
        }
    }
}

struct AuditVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Walk the whole chain; exit non-zero naming the first edited, deleted, inserted or reordered record.",
        discussion: """
            Each link is an HMAC under the audit key that the key-encryption key seals, so verifying needs the data \
            directory's kek. Removing the newest records leaves a valid chain: keep the output of `sigil audit head` \
            outside the store and pass it with --head to check that the chain still holds that record.
            """)
    @OptionGroup var data: DataDirectoryOption
    @Option(
        help:
            "A head exported earlier by `sigil audit head --json`: the chain must still hold that record, with that link."
    )
    var head: String?

    func run() async throws {
        let anchored: AuditHead?
        if let head {
            guard
                let decoded = try? JSONDecoder().decode(
                    AuditHead.self, from: Data(readFile(head, what: "anchored head").utf8))
            else {
                throw CLIError("bad_request", "\(head) is not the JSON that `sigil audit head --json` prints")
            }
            anchored = decoded
        } else {
            anchored = nil
        }
        let store = try await openAuditStore(data)
        var anchoredRecord: AuditRecord? = nil
        var last: Int64 = 0
        let verification = try await store.verifyAuditChain(pageSize: AuditFilterOptions.pageSize) { record in
            if record.sequence == anchored?.sequence { anchoredRecord = record }
            last = record.sequence
        }
        if case .broken(let sequence, let reason) = verification {
            throw CLIError("audit_chain_broken", "record \(sequence): \(reason)")
        }
        if let anchored, let problem = anchored.problem(in: anchoredRecord, lastSequence: last) {
            throw CLIError("audit_chain_broken", problem)
        }
        if case .valid(let count, let hash) = verification {
            print(
                "audit chain OK: \(count) records, head \(hash)"
                    + (anchored.map { "; anchored head \($0.sequence) is in the chain" } ?? ""))
        }
    }
}

struct AuditHeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "head",
        abstract: "Print the newest record's sequence, link and time, to anchor outside the store.",
        discussion: """
            Keep the JSON (`--json`) somewhere the store's writers cannot change: a ticket, another system, a \
            transparency log. `sigil audit verify --head FILE` later proves the chain was not cut back before it.
            """)
    @OptionGroup var data: DataDirectoryOption
    @Flag(help: "Print JSON (the form `verify --head` reads).") var json = false

    func run() async throws {
        let store = try await openAuditStore(data)
        guard let last = try await store.lastAuditRecord() else {
            throw CLIError("not_found", "the audit chain is empty")
        }
        let head = AuditHead(last)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(head), as: UTF8.self))
        } else {
            print("seq \(head.sequence)  link \(head.link)  time \(head.time)")
        }
    }
}

struct AuditExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write every (matching) record as JSON lines.")
    @OptionGroup var data: DataDirectoryOption
    @OptionGroup var filter: AuditFilterOptions

    func run() async throws {
        let store = try await openAuditStore(data)
        try await store.forEachAuditRecord({ try filter.query(afterSequence: $0) }) { print($0.jsonLine) }
    }
}

struct AuditTailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail", abstract: "Follow new records live (Ctrl-C to stop).")
    @OptionGroup var data: DataDirectoryOption
    @OptionGroup var filter: AuditFilterOptions
    @Option(help: "Show this many existing records first.") var lines: Int = 10
    @Flag(help: "Print JSON lines.") var json = false

    func run() async throws {
        let store = try await openAuditStore(data)
        let clock = SystemClock()
        var (existing, after) = try await store.newestAuditRecords(try filter.query(afterSequence: 0), count: lines)
        func show(_ record: AuditRecord) {
            let event = record.event
            print(
                json
                    ? record.jsonLine
                    : SafeText.escapingControlCharacters(
                        "\(record.sequence) \(AuditRecord.timestamp(event.time)) \(event.action.rawValue) \(event.outcome.rawValue) \(event.code ?? "-") \(event.subject ?? "-") \(event.serial ?? "-") actor=\(event.actor)"
                    ))
        }
        existing.forEach(show)
        while !Task.isCancelled {
            try await clock.sleep(until: clock.now + .milliseconds(500))
            after = try await store.forEachAuditRecord(after: after, { try filter.query(afterSequence: $0) }) {
                show($0)
            }
            fflush(nil)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self.padding(toLength: width, withPad: " ", startingAt: 0)
    }
}
