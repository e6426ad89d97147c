import Foundation
import SigilAPIModels
import SigilCore
import SigilTestSupport
import Testing

@testable import SigilServer

@Suite("Trust console sessions and pages")
struct TrustConsoleTests {
    let clock = ManualClock(now: TestPKI.referenceDate)

    @Test("a login token works once, within its lifetime, and becomes an 8-hour session")
    func loginOnce() throws {
        let sessions = ConsoleSessions(clock: clock)
        let login = try sessions.mintLogin(actor: "admin:uid=0,pid=1", lifetime: .seconds(300))
        #expect(login.expiresAt == TestPKI.referenceDate + .seconds(300))
        let (id, session) = try sessions.redeem(login.token)
        #expect(session.actor == "admin:uid=0,pid=1")
        #expect(sessions.session(id) == session)
        #expect(throws: CAError.self) { try sessions.redeem(login.token) }  // used
        clock.advance(by: .seconds(8 * 3600 - 1))
        #expect(sessions.session(id) != nil)
        clock.advance(by: .seconds(1))
        #expect(sessions.session(id) == nil)
    }

    @Test("an expired login token is refused; a lifetime over five minutes is cut to five")
    func expiredLogin() throws {
        let sessions = ConsoleSessions(clock: clock)
        let login = try sessions.mintLogin(actor: "admin", lifetime: .seconds(3600))
        #expect(login.expiresAt == TestPKI.referenceDate + .seconds(300))
        clock.advance(by: .seconds(300))
        #expect(throws: CAError.self) { try sessions.redeem(login.token) }
    }

    @Test("unknown and ended sessions are not sessions; a forged id is refused")
    func forged() throws {
        let sessions = ConsoleSessions(clock: clock)
        #expect(sessions.session(nil) == nil)
        #expect(sessions.session("forged") == nil)
        let (id, _) = try sessions.redeem(try sessions.mintLogin(actor: "admin", lifetime: .seconds(60)).token)
        #expect(sessions.end(id) != nil)
        #expect(sessions.session(id) == nil)
        #expect(sessions.end(id) == nil)
    }

    @Test("pages escape what comes from outside and carry no inline script")
    func escaping() {
        let hostile = "<script>alert('x')</script>\" onmouseover=\"x"
        let view = AuthorityView(
            id: "root-1", role: "root", state: "active", parentID: nil, upstream: true, subject: hostile, serial: "01",
            keyType: "EC P-256", sha256Fingerprint: "ab", publicKeySHA256: "cd", subjectKeyID: "ef",
            notBefore: "2026-01-01T00:00:00Z", notAfter: "2027-01-01T00:00:00Z", keyStored: true)
        let page = ConsolePages.layout(
            "Trust chain", current: .chain, trustDomain: hostile, signedIn: false, now: TestPKI.referenceDate,
            body: ConsolePages.chain(AuthoritiesResponse(trustDomain: hostile, bundleSequence: 1, authorities: [view])))
        #expect(!page.contains("<script>alert"))
        #expect(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot; onmouseover=&quot;x"))
        // The only script is the external asset.
        #expect(page.components(separatedBy: "<script").count == 2)
        #expect(page.contains("<script src=\"/ui/assets/console.js\" defer></script>"))
    }

    @Test("the activity chart has a bar per minute with its count, and the codes of the denials")
    func activity() {
        let now = TestPKI.referenceDate
        let since = now - .seconds(3600)
        let minute = now.microsecondsSince1970 / 60_000_000
        let page = ConsolePages.activity(
            [
                AuditCount(minute: minute, action: .issue, code: nil, count: 2),
                AuditCount(minute: minute, action: .renew, code: nil, count: 1),
                AuditCount(minute: minute, action: .deny, code: "token_expired", count: 4),
            ], latestDenials: [], since: since, now: now)
        let at = Timestamp.seconds(Date(timeIntervalSince1970: Double(minute * 60)))
        #expect(page.contains("<title>\(at): 3 issued</title>"))
        #expect(page.contains("<title>\(at): 4 denied</title>"))
        #expect(page.contains("data-issued=\"3\" data-denied=\"4\""))
        #expect(page.contains("<tr data-code=\"token_expired\">"))
    }

    @Test("the timeline places the planner's marks and one bar per authority")
    func timeline() {
        let start = TestPKI.referenceDate
        let planner = RotationPlanner()
        let bars = [("root-1", "root", 365.0), ("intermediate-1", "intermediate", 2.0)].map { id, role, days in
            let end = start + .seconds(Int64(days * 86_400))
            let schedule = planner.schedule(notBefore: start, notAfter: end)
            return ConsolePages.TimelineBar(
                id: id, role: role, state: "active", notBefore: start, notAfter: end, prepareAt: schedule.prepareAt,
                activateAt: schedule.activateAt)
        }
        let svg = ConsolePages.timeline(bars, events: [], now: start + .seconds(3600))
        #expect(svg.components(separatedBy: "<g class=\"bar").count == 3)
        #expect(svg.contains("data-authority=\"intermediate-1\""))
        #expect(svg.contains("data-prepare-at=\"\(Timestamp.seconds(start + .seconds(86_400)))\""))
        #expect(svg.contains("data-activate-at=\"\(Timestamp.seconds(start + .seconds(144_000)))\""))
    }
}
