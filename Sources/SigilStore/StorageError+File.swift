import SigilCore
import SigilFiles

extension StorageError {
    /// Runs `body` (file work for the store: the key-encryption key, the data directory), reporting a
    /// `FileError` as the store's error with the same meaning.
    static func mappingFiles<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as FileError {
            throw StorageError(
                error.code == .insecure ? .insecure : .unavailable, reason: error.reason, file: error.file,
                line: error.line)
        }
    }
}
