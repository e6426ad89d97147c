import Foundation

/// A file operation that could not be carried out. `reason` names the path and the cause; never file contents.
public struct FileError: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case unavailable, insecure
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The file cannot be created, read, written or renamed (permissions, disk full, a directory in the way).
        public static let unavailable = Code(.unavailable)
        /// A file that holds secrets is a link, belongs to another user, or can be read by group or others.
        public static let insecure = Code(.insecure)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int

    public init(_ code: Code, reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "file_\(code): \(reason)" }
    public static func == (lhs: FileError, rhs: FileError) -> Bool { lhs.code == rhs.code }
}

/// The text of the current `errno`.
func errnoText() -> String { String(cString: strerror(errno)) }

/// `count` random bytes as lowercase hex, for names that must not collide or be guessed (temporary files,
/// version directories). The system generator is the kernel's (getrandom(2)).
func randomHex(_ count: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
}
