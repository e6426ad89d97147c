import Foundation
import Logging
import SigilCore
import Synchronization

/// Streams every committed audit record as one JSON line to stdout or a file, for SIEM pipelines.
/// Losing the sink never loses a record: the store commit has already happened, and a failed write is logged.
public final class JSONLinesAuditSink: Sendable {
    private let handle: Mutex<FileHandle>
    private let logger: Logger

    /// - Parameter destination: `stdout`, or a file path (appended to; created 0600).
    public init(destination: String, logger: Logger) throws {
        if destination == "stdout" {
            handle = Mutex(FileHandle.standardOutput)
        } else {
            if !FileManager.default.fileExists(atPath: destination) {
                guard
                    FileManager.default.createFile(
                        atPath: destination, contents: nil, attributes: [.posixPermissions: 0o600])
                else {
                    throw CAError.configuration(reason: "cannot create audit sink \(destination)")
                }
            }
            guard let file = FileHandle(forWritingAtPath: destination) else {
                throw CAError.configuration(reason: "cannot open audit sink \(destination)")
            }
            file.seekToEndOfFile()
            handle = Mutex(file)
        }
        self.logger = logger
    }

    public func emit(_ records: [AuditRecord]) {
        let lines = records.map { $0.jsonLine + "\n" }.joined()
        do {
            try handle.withLock { try $0.write(contentsOf: Data(lines.utf8)) }
        } catch {
            logger.warning(
                "audit sink write failed; the store still holds the records", metadata: ["sigil.reason": "\(error)"])
        }
    }
}
