import Foundation
import SigilCore
import SigilTestSupport
import Testing

@Suite("RotationPlanner")
struct RotationPlannerTests {
    static let start = TestPKI.referenceDate
    static let hour = Duration.seconds(3600)
    /// A 48-hour intermediate: prepare at 24 h (½ remaining), activate at 40 h (⅙ remaining).
    static let active = AuthoritySlot.Validity(notBefore: start, notAfter: start + hour * 48)
    static let successor = AuthoritySlot.Validity(notBefore: start + hour * 24, notAfter: start + hour * 72)
    static let prepareAt = start + hour * 24
    static let activateAt = start + hour * 40

    let planner = RotationPlanner()

    static func slot(prepared: Bool, issuerIsCurrent: Bool = true) -> AuthoritySlot {
        AuthoritySlot(
            active: active, prepared: prepared ? successor : nil, issuerIsCurrent: issuerIsCurrent,
            minimumRemaining: hour)
    }

    @Test("a fresh authority needs nothing until the prepare point")
    func freshAuthority() {
        for now in [Self.start, Self.start + Self.hour, Self.prepareAt - .seconds(1)] {
            #expect(planner.action(for: Self.slot(prepared: false), at: now) == .none(nextCheck: Self.prepareAt))
        }
    }

    @Test("a root slot (no minimum remaining) also waits for its prepare point")
    func freshRoot() {
        let root = AuthoritySlot.Validity(notBefore: Self.start, notAfter: Self.start + .seconds(365 * 86_400))
        let slot = AuthoritySlot(active: root, prepared: nil)
        let prepareAt = Self.start + .seconds(365 * 86_400 / 2)
        #expect(planner.action(for: slot, at: Self.start) == .none(nextCheck: prepareAt))
        #expect(planner.action(for: slot, at: prepareAt) == .prepareNext)
    }

    @Test("at half-life without a successor: prepare one")
    func halfLifePrepares() {
        for now in [Self.prepareAt, Self.prepareAt + Self.hour * 8, Self.activateAt - .seconds(1)] {
            #expect(planner.action(for: Self.slot(prepared: false), at: now) == .prepareNext)
        }
    }

    @Test("with a successor prepared, wait for the activation point")
    func preparedWaitsForActivation() {
        for now in [Self.start, Self.prepareAt, Self.activateAt - .seconds(1)] {
            #expect(planner.action(for: Self.slot(prepared: true), at: now) == .none(nextCheck: Self.activateAt))
        }
    }

    @Test("at one sixth remaining with a successor: activate it")
    func activationPoint() {
        for now in [Self.activateAt, Self.activateAt + Self.hour * 6] {
            #expect(planner.action(for: Self.slot(prepared: true), at: now) == .activateNext)
        }
    }

    @Test("at one sixth remaining without a successor: prepare one first")
    func activationPointWithoutSuccessor() {
        #expect(planner.action(for: Self.slot(prepared: false), at: Self.activateAt) == .prepareNext)
    }

    @Test("less life left than a default leaf: activate the successor, or renew without one")
    func tooShortForALeaf() {
        let now = Self.active.notAfter - .seconds(1800)
        #expect(planner.action(for: Self.slot(prepared: true), at: now) == .activateNext)
        #expect(isRenew(planner.action(for: Self.slot(prepared: false), at: now)))
    }

    @Test("a clock that jumped past expiry renews, with or without a successor")
    func expired() {
        for prepared in [false, true] {
            for now in [Self.active.notAfter, Self.active.notAfter + .seconds(86_400 * 30)] {
                #expect(isRenew(planner.action(for: Self.slot(prepared: prepared), at: now)))
            }
        }
    }

    @Test("no active authority renews")
    func missingActive() {
        let slot = AuthoritySlot(active: nil, prepared: Self.successor)
        #expect(isRenew(planner.action(for: slot, at: Self.start)))
        #expect(isRenew(planner.action(for: AuthoritySlot(active: nil, prepared: nil), at: Self.start)))
    }

    @Test("an intermediate whose issuer is no longer the active root renews at once")
    func issuerNotCurrent() {
        for prepared in [false, true] {
            #expect(isRenew(planner.action(for: Self.slot(prepared: prepared, issuerIsCurrent: false), at: Self.start)))
        }
    }

    @Test("the next check never falls after the last moment a default leaf still fits")
    func nextCheckCappedAtLeafDeadline() {
        let planner = RotationPlanner(policy: RotationPolicy(prepareAtRemaining: 0.5, activateAtRemaining: 0.01))
        let action = planner.action(for: Self.slot(prepared: true), at: Self.start)
        #expect(action == .none(nextCheck: Self.active.notAfter - Self.hour))
    }

    @Test("custom thresholds move the prepare and activate points")
    func customThresholds() {
        let planner = RotationPlanner(policy: RotationPolicy(prepareAtRemaining: 0.25, activateAtRemaining: 0.125))
        #expect(
            planner.action(for: Self.slot(prepared: false), at: Self.start)
                == .none(nextCheck: Self.start + Self.hour * 36))
        #expect(planner.action(for: Self.slot(prepared: false), at: Self.start + Self.hour * 36) == .prepareNext)
        #expect(
            planner.action(for: Self.slot(prepared: true), at: Self.start + Self.hour * 36)
                == .none(nextCheck: Self.start + Self.hour * 42))
        #expect(planner.action(for: Self.slot(prepared: true), at: Self.start + Self.hour * 42) == .activateNext)
    }

    @Test("default thresholds are SPIRE's: prepare at ½ remaining, activate at ⅙")
    func defaultPolicy() {
        #expect(RotationPolicy().prepareAtRemaining == 0.5)
        #expect(RotationPolicy().activateAtRemaining == 1.0 / 6.0)
    }

    func isRenew(_ action: RotationAction) -> Bool {
        if case .renew = action { return true }
        return false
    }
}
