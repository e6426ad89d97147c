import Foundation

/// What rotation should do next for one role.
public enum RotationAction: Equatable, Sendable {
    /// Create a successor in state `prepared` (a root is published in the bundle from now on).
    case prepareNext
    /// Make the prepared successor active and retire the current one.
    case activateNext
    /// There is no usable active authority (missing, expired, too short-lived to sign a default leaf, or
    /// signed by a root that is no longer active): create and activate a successor now.
    case renew(reason: String)
    /// Nothing to do before `nextCheck`.
    case none(nextCheck: Date)
}

/// Rotation thresholds. Defaults are SPIRE's: prepare at ½ of remaining life, activate at ⅙.
public struct RotationPolicy: Sendable, Equatable {
    /// Fraction of the lifetime still remaining when the successor is prepared. Default 1/2.
    public var prepareAtRemaining: Double
    /// Fraction of the lifetime still remaining when the successor is activated. Default 1/6.
    public var activateAtRemaining: Double

    public init(prepareAtRemaining: Double = 1.0 / 2.0, activateAtRemaining: Double = 1.0 / 6.0) {
        self.prepareAtRemaining = prepareAtRemaining
        self.activateAtRemaining = activateAtRemaining
    }
}

/// The facts about one role (root or intermediate) the planner decides on.
public struct AuthoritySlot: Sendable, Equatable {
    public struct Validity: Sendable, Equatable {
        public let notBefore: Date
        public let notAfter: Date
        public init(notBefore: Date, notAfter: Date) {
            self.notBefore = notBefore
            self.notAfter = notAfter
        }
    }

    public var active: Validity?
    public var prepared: Validity?
    /// Whether the active authority's issuer is still the active root (always true for roots).
    public var issuerIsCurrent: Bool
    /// The shortest remaining life an active authority must have to sign a default-TTL leaf; zero for roots.
    public var minimumRemaining: Duration

    public init(
        active: Validity?, prepared: Validity?, issuerIsCurrent: Bool = true, minimumRemaining: Duration = .zero
    ) {
        self.active = active
        self.prepared = prepared
        self.issuerIsCurrent = issuerIsCurrent
        self.minimumRemaining = minimumRemaining
    }
}

/// Pure rotation decisions: no clock, no I/O, the time is an argument.
public struct RotationPlanner: Sendable {
    public let policy: RotationPolicy

    public init(policy: RotationPolicy = RotationPolicy()) { self.policy = policy }

    /// When the successor of an authority valid from `notBefore` to `notAfter` is prepared and activated.
    public func schedule(notBefore: Date, notAfter: Date) -> (prepareAt: Date, activateAt: Date) {
        let lifetime = notAfter.timeIntervalSince(notBefore)
        return (
            notAfter.addingTimeInterval(-lifetime * policy.prepareAtRemaining),
            notAfter.addingTimeInterval(-lifetime * policy.activateAtRemaining)
        )
    }

    public func action(for slot: AuthoritySlot, at now: Date) -> RotationAction {
        guard let active = slot.active else { return .renew(reason: "no active authority") }
        if now >= active.notAfter { return .renew(reason: "active authority expired") }
        if !slot.issuerIsCurrent { return .renew(reason: "issuer is no longer the active root") }
        let remaining = active.notAfter.timeIntervalSince(now)
        if remaining < slot.minimumRemaining.timeInterval {
            return slot.prepared != nil
                ? .activateNext : .renew(reason: "remaining lifetime shorter than a default leaf")
        }
        let (prepareAt, activateAt) = schedule(notBefore: active.notBefore, notAfter: active.notAfter)
        let leafDeadline = active.notAfter.addingTimeInterval(-slot.minimumRemaining.timeInterval)
        if now >= activateAt {
            return slot.prepared == nil ? .prepareNext : .activateNext
        }
        if now >= prepareAt && slot.prepared == nil { return .prepareNext }
        let next = slot.prepared == nil ? prepareAt : activateAt
        return .none(nextCheck: min(next, leafDeadline))
    }
}
