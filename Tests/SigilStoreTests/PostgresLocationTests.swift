import Foundation
import NIOSSL
import SigilCore
@testable import SigilStore
import Testing

@Suite("PostgreSQL store URL")
struct PostgresLocationTests {
    @Test(
        "without sslmode a remote host gets verify-full and a loopback one prefer",
        arguments: [
            ("postgres://sigil@db.example.org/sigil", PostgresLocation.TLSMode.verifyFull),
            ("postgres://sigil@10.1.2.3:6432/sigil", .verifyFull),
            ("postgres://sigil@127.0.0.1:5432/sigil", .prefer),
            ("postgresql://sigil@localhost/sigil", .prefer),
            ("postgres://sigil@[::1]:5432/sigil", .prefer),
        ])
    func defaults(_ url: String, _ mode: PostgresLocation.TLSMode) throws {
        #expect(try PostgresLocation(url: url).tlsMode == mode)
    }

    @Test("sslmode names libpq's modes; plain only when the URL says so")
    func explicitModes() throws {
        #expect(try PostgresLocation(url: "postgres://u@db.example.org/d?sslmode=disable").tlsMode == .disable)
        #expect(try PostgresLocation(url: "postgres://u@db.example.org/d?sslmode=allow").tlsMode == .prefer)
        #expect(try PostgresLocation(url: "postgres://u@db.example.org/d?sslmode=require").tlsMode == .require)
        #expect(try PostgresLocation(url: "postgres://u@db.example.org/d?sslmode=verify-ca").tlsMode == .verifyCA)
        #expect(try PostgresLocation(url: "postgres://u:pw@db.example.org:6543/d").port == 6543)
        #expect(throws: StorageError.self) {
            try PostgresLocation(url: "postgres://u@db.example.org/d?sslmode=sometimes")
        }
        #expect(throws: StorageError.self) { try PostgresLocation(url: "postgres://u@db.example.org/d?sslcert=x") }
        #expect(throws: StorageError.self) { try PostgresLocation(url: "mysql://u@db.example.org/d") }
    }

    @Test("the verifying modes check the server's certificate; messages never show the password")
    func tlsAndDescription() throws {
        let full = try PostgresLocation(url: "postgres://sigil:hunter2@db.example.org/sigil").tlsConfiguration()
        #expect(full?.certificateVerification == .fullVerification)
        #expect(
            try PostgresLocation(url: "postgres://u@h/d?sslmode=verify-ca").tlsConfiguration()?.certificateVerification
                == .noHostnameVerification)
        #expect(
            try PostgresLocation(url: "postgres://u@h/d?sslmode=require").tlsConfiguration()?.certificateVerification
                == CertificateVerification.none)
        #expect(try PostgresLocation(url: "postgres://u@h/d?sslmode=disable").tlsConfiguration() == nil)
        #expect(throws: StorageError.self) {
            try PostgresLocation(url: "postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent")
                .tlsConfiguration()
        }
        let description = try PostgresLocation(url: "postgres://sigil:hunter2@db.example.org/sigil").description
        #expect(!description.contains("hunter2") && description.contains("verify-full"))
    }
}
