import Foundation
import SigilCore
import SigilStore
import SigilTestSupport
import Testing

/// The `LeaseStore` contract, run against every store in `StoreFactory.all`.
@Suite("LeaseStore contract")
struct LeaseStoreContractTests {
    static let now = TestPKI.referenceDate
    static let name = "rotation"

    @Test("a free lease is taken and reported until it expires", arguments: StoreFactory.all)
    func takeFreeLease(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            #expect(try await store.lease(Self.name, now: Self.now) == nil)
            #expect(
                try await store.acquireLease(Self.name, holder: "a", expiresAt: Self.now + .seconds(30), now: Self.now))
            let expected = Lease(name: Self.name, holder: "a", expiresAt: Self.now + .seconds(30))
            #expect(try await store.lease(Self.name, now: Self.now + .seconds(29)) == expected)
            #expect(try await store.lease(Self.name, now: Self.now + .seconds(30)) == nil)
        }
    }

    @Test("another holder cannot take a live lease, the holder can renew it", arguments: StoreFactory.all)
    func liveLeaseIsExclusive(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            #expect(
                try await store.acquireLease(Self.name, holder: "a", expiresAt: Self.now + .seconds(30), now: Self.now))
            let later = Self.now + .seconds(10)
            #expect(
                try await store.acquireLease(Self.name, holder: "b", expiresAt: later + .seconds(30), now: later)
                    == false)
            #expect(try await store.lease(Self.name, now: later)?.holder == "a")
            #expect(try await store.acquireLease(Self.name, holder: "a", expiresAt: later + .seconds(30), now: later))
            #expect(try await store.lease(Self.name, now: later)?.expiresAt == later + .seconds(30))
        }
    }

    @Test("an expired lease passes to the next holder", arguments: StoreFactory.all)
    func expiredLeasePasses(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            #expect(
                try await store.acquireLease(Self.name, holder: "a", expiresAt: Self.now + .seconds(30), now: Self.now))
            let later = Self.now + .seconds(30)
            #expect(try await store.acquireLease(Self.name, holder: "b", expiresAt: later + .seconds(30), now: later))
            #expect(try await store.lease(Self.name, now: later)?.holder == "b")
            #expect(
                try await store.acquireLease(Self.name, holder: "a", expiresAt: later + .seconds(30), now: later)
                    == false)
        }
    }

    @Test("leases with different names are independent", arguments: StoreFactory.all)
    func independentNames(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            #expect(try await store.acquireLease("one", holder: "a", expiresAt: Self.now + .seconds(30), now: Self.now))
            #expect(try await store.acquireLease("two", holder: "b", expiresAt: Self.now + .seconds(30), now: Self.now))
            #expect(try await store.lease("one", now: Self.now)?.holder == "a")
            #expect(try await store.lease("two", now: Self.now)?.holder == "b")
        }
    }

    @Test("of several holders racing for a free lease exactly one wins", arguments: StoreFactory.all)
    func raceHasOneWinner(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
                for holder in 0..<8 {
                    group.addTask {
                        try await store.acquireLease(
                            Self.name, holder: "h\(holder)", expiresAt: Self.now + .seconds(30), now: Self.now)
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
        }
    }
}
