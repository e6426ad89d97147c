import Foundation
import SigilAPIModels
import SigilCore

/// The trust console's pages as HTML, from values the routes gather (no I/O here). Every text that comes from
/// outside (subjects, identities, audit reasons, query values) goes through `escape`; no page holds a script
/// of its own (the strict CSP allows only `/ui/assets/console.js`), a token or key material.
enum ConsolePages {
    enum Page: String, CaseIterable {
        case chain, timeline, workloads, activity, audit
        var title: String {
            switch self {
            case .chain: "Trust chain"
            case .timeline: "Rotation timeline"
            case .workloads: "Workloads"
            case .activity: "Activity"
            case .audit: "Audit"
            }
        }
        /// Pages behind an operator session.
        var needsSession: Bool { self == .workloads || self == .activity || self == .audit }
    }

    /// `value` with one decimal, for SVG coordinates.
    static func decimal(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// The frame of every page: header with the trust domain and the navigation, then `body`.
    static func layout(
        _ title: String, current: Page?, trustDomain: String, signedIn: Bool, refresh: Int? = nil, now: Date,
        body: String
    ) -> String {
        let links = Page.allCases.map { page -> String in
            let label =
                escape(page.title) + (page.needsSession && !signedIn ? " <span class=\"lock\">(operators)</span>" : "")
            return page == current
                ? "<a href=\"/ui/\(page.rawValue)\" aria-current=\"page\">\(label)</a>"
                : "<a href=\"/ui/\(page.rawValue)\">\(label)</a>"
        }.joined()
        let session =
            signedIn
            ? "<form method=\"post\" action=\"/ui/logout\" class=\"logout\"><button type=\"submit\">Log out</button></form>"
            : ""
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sigil · \(escape(title))</title>
            <link rel="icon" href="/ui/assets/favicon.svg"><link rel="stylesheet" href="/ui/assets/console.css"><script src="/ui/assets/console.js" defer></script>
            </head><body>
            <header><span class="brand">Sigil</span><span class="domain">trust domain \(escape(trustDomain))</span>
            <nav>\(links)</nav>\(session)</header>
            <main\(refresh.map { " data-refresh=\"\($0)\"" } ?? "")><h1>\(escape(title))</h1>
            \(body)
            </main>
            <footer>Read-only view · rendered \(Timestamp.seconds(now))\(refresh.map { " · refreshes every \($0) s" } ?? "")</footer>
            </body></html>
            """
    }

    // MARK: Trust chain

    static func chain(_ response: AuthoritiesResponse) -> String {
        let views = response.authorities
        func node(_ view: AuthorityView) -> String {
            let children = views.filter { $0.parentID == view.id && $0.id != view.id }
            let live = view.liveCertificates.map { "<dt>live certificates</dt><dd class=\"live\">\($0)</dd>" } ?? ""
            let left = view.secondsLeft.map { $0 > 0 ? Duration.seconds($0).humanReadable + " left" : "expired" } ?? ""
            return """
                <li class="authority" data-authority-id="\(escape(view.id))" data-role="\(escape(view.role))" data-state="\(escape(view.state))">
                <div class="card"><div class="title"><code>\(escape(view.id))</code>
                <span class="badge role">\(escape(view.role))</span><span class="badge state-\(escape(view.state))">\(escape(view.state))</span>\(view.upstream ? "<span class=\"badge upstream\">upstream</span>" : "")
                <span class="key">\(escape(view.keyType))</span></div>
                <dl><dt>subject</dt><dd>\(escape(view.subject))</dd>
                <dt>valid</dt><dd>\(escape(view.notBefore)) → \(escape(view.notAfter)) <span class="left">\(escape(left))</span></dd>
                <dt>sha256</dt><dd><code class="fingerprint">\(escape(view.sha256Fingerprint))</code> <button type="button" class="copy" data-copy="\(escape(view.sha256Fingerprint))">copy</button></dd>
                <dt>key sha256</dt><dd><code>\(escape(view.publicKeySHA256))</code>\(view.keyStored == false ? " <span class=\"note\">private key erased: signs nothing</span>" : "")</dd>
                \(live)</dl></div>
                \(children.isEmpty ? "" : "<ul>" + children.map(node).joined() + "</ul>")
                </li>
                """
        }
        let roots = views.filter { $0.parentID == nil }
        return """
            <p class="summary">Bundle sequence \(response.bundleSequence) · \(views.count) authorities · the same data as <code>sigil inspect --json</code> and <code>GET /v1/authorities</code>.</p>
            <ul class="tree">\(roots.map(node).joined())</ul>
            """
    }

    // MARK: Timeline

    struct TimelineBar {
        let id: String
        let role: String
        let state: String
        let notBefore: Date
        let notAfter: Date
        /// When the planner prepares and activates this authority's successor.
        let prepareAt: Date
        let activateAt: Date
    }

    struct TimelineEvent {
        let authorityID: String
        let action: String
        let time: Date
    }

    /// One SVG per role (their lifetimes differ by orders of magnitude), one bar per authority over its life,
    /// the planner's marks, taint and revoke events, and now. Hovering shows exact times (SVG titles).
    static func timeline(_ bars: [TimelineBar], events: [TimelineEvent], now: Date) -> String {
        var out =
            "<p class=\"summary\">Planned marks come from the rotation planner: the successor is prepared at ½ and activated at ⅙ of an authority's remaining life. Hover for exact times.</p>"
        for role in ["root", "intermediate"] {
            let group = bars.filter { $0.role == role }.sorted { $0.notBefore < $1.notBefore }
            guard !group.isEmpty else { continue }
            let start = min(group.map(\.notBefore).min()!, now)  // precondition: group is not empty
            let end = max(group.map(\.notAfter).max()!, now)  // precondition: group is not empty
            let span = max(end.timeIntervalSince(start), 1)
            let width = 960.0
            let left = 300.0
            let rowHeight = 28.0
            func position(_ date: Date) -> Double { left + (width - left - 10) * date.timeIntervalSince(start) / span }
            func x(_ date: Date) -> String { decimal(position(date)) }
            let height = Double(group.count) * rowHeight + 40
            var svg =
                "<svg class=\"timeline\" data-role=\"\(role)\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(role) authorities over time\">"
            svg += "<text class=\"axis\" x=\"\(left)\" y=\"\(height - 8)\">\(Timestamp.seconds(start))</text>"
            svg += "<text class=\"axis end\" x=\"\(width - 10)\" y=\"\(height - 8)\">\(Timestamp.seconds(end))</text>"
            for (index, bar) in group.enumerated() {
                let y = 10 + Double(index) * rowHeight
                let times = "\(Timestamp.seconds(bar.notBefore)) → \(Timestamp.seconds(bar.notAfter))"
                svg += """
                    <g class="bar state-\(escape(bar.state))" data-authority="\(escape(bar.id))" data-not-before="\(Timestamp.seconds(bar.notBefore))" data-not-after="\(Timestamp.seconds(bar.notAfter))" data-prepare-at="\(Timestamp.seconds(bar.prepareAt))" data-activate-at="\(Timestamp.seconds(bar.activateAt))">
                    <text class="label" x="4" y="\(y + 15)">\(escape(bar.id))</text>
                    <rect x="\(x(bar.notBefore))" y="\(y)" width="\(decimal(max(2, position(bar.notAfter) - position(bar.notBefore))))" height="20" rx="3"><title>\(escape(bar.id)) \(escape(bar.state)): \(times)</title></rect>
                    <line class="mark prepare" x1="\(x(bar.prepareAt))" x2="\(x(bar.prepareAt))" y1="\(y - 2)" y2="\(y + 22)"><title>successor prepared \(Timestamp.seconds(bar.prepareAt))</title></line>
                    <line class="mark activate" x1="\(x(bar.activateAt))" x2="\(x(bar.activateAt))" y1="\(y - 2)" y2="\(y + 22)"><title>successor activated \(Timestamp.seconds(bar.activateAt))</title></line>
                    """
                for event in events where event.authorityID == bar.id {
                    svg +=
                        "<circle class=\"event \(escape(event.action))\" data-event=\"\(escape(event.action))\" cx=\"\(x(event.time))\" cy=\"\(y + 10)\" r=\"6\"><title>\(escape(event.action)) \(Timestamp.seconds(event.time))</title></circle>"
                }
                svg += "</g>"
            }
            svg +=
                "<line class=\"now\" x1=\"\(x(now))\" x2=\"\(x(now))\" y1=\"0\" y2=\"\(height - 24)\"><title>now \(Timestamp.seconds(now))</title></line></svg>"
            out += "<h2>\(role == "root" ? "Roots" : "Intermediates")</h2>" + svg
        }
        out +=
            "<p class=\"legend\"><span class=\"swatch state-active\"></span>active <span class=\"swatch state-prepared\"></span>prepared <span class=\"swatch state-retired\"></span>retired <span class=\"swatch state-tainted\"></span>tainted <span class=\"swatch state-revoked\"></span>revoked <span class=\"swatch prepare\"></span>successor prepared <span class=\"swatch activate\"></span>successor activated <span class=\"swatch now\"></span>now <span class=\"swatch event\"></span>taint / revoke</p>"
        return out
    }

    // MARK: Workloads

    /// Totals and expiry buckets, the identities expiring soonest (a stuck renewal shows there first), then one row
    /// per namespace, or with `namespace` one row per service account of it.
    static func workloads(
        _ identities: [IdentitySummary], horizons: [Duration], namespace selected: String?, now: Date
    ) -> String {
        let total = identities.reduce(0) { $0 + $1.live }
        let expiring = horizons.indices.map { index in identities.reduce(0) { $0 + $1.expiringWithin[index] } }
        let buckets = zip(horizons, expiring).map { horizon, count -> String in
            "<div class=\"bucket\" data-within-minutes=\"\(horizon.wholeSeconds / 60)\"><span class=\"count\">\(count)</span> expire within \(horizon.wholeSeconds / 60) min</div>"
        }.joined()
        func left(_ date: Date) -> String {
            let seconds = date.timeIntervalSince(now)
            return
                "<span\(seconds < 300 ? " class=\"warn\"" : "")>\(Duration.seconds(max(0, Int64(seconds))).humanReadable)</span>"
        }
        func namespaceOf(_ identity: IdentitySummary) -> String { identity.namespace ?? "(not a workload ID)" }
        let soonest = identities.sorted { $0.soonestExpiry < $1.soonestExpiry }.prefix(10).map { identity -> String in
            "<tr><td>\(escape(identity.spiffeID))</td><td class=\"num\">\(identity.live)</td><td>\(Timestamp.seconds(identity.soonestExpiry))</td><td class=\"num\">\(left(identity.soonestExpiry))</td></tr>"
        }.joined()
        let byNamespace = Dictionary(grouping: identities, by: namespaceOf)
        let table: String
        if let selected {
            let members = (byNamespace[selected] ?? []).sorted { $0.spiffeID < $1.spiffeID }
            let rows = members.map { identity -> String in
                """
                <tr data-identity="\(escape(identity.spiffeID))" data-live="\(identity.live)"><td>\(escape(identity.serviceAccount ?? identity.spiffeID))</td><td class="num">\(identity.live)</td>\(identity.expiringWithin.map { "<td class=\"num\">\($0)</td>" }.joined())<td>\(Timestamp.seconds(identity.soonestExpiry))</td><td class="num">\(left(identity.soonestExpiry))</td></tr>
                """
            }.joined()
            table = """
                <h2>Namespace \(escape(selected)) · \(members.reduce(0) { $0 + $1.live }) live · <a href="/ui/workloads">all namespaces</a></h2>
                <table class="workloads"><thead><tr><th>service account</th><th>live</th>\(horizons.map { "<th>≤ \($0.wholeSeconds / 60) min</th>" }.joined())<th>soonest expiry</th><th>in</th></tr></thead>
                <tbody>\(rows)</tbody></table>
                """
        } else {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let rows = byNamespace.keys.sorted().map { namespace -> String in
                let members = byNamespace[namespace] ?? []
                let live = members.reduce(0) { $0 + $1.live }
                let within = horizons.indices.map { index in members.reduce(0) { $0 + $1.expiringWithin[index] } }
                let first = members.map(\.soonestExpiry).min() ?? now
                let link =
                    "/ui/workloads?namespace=\(namespace.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
                return """
                    <tr data-namespace="\(escape(namespace))" data-live="\(live)"><td><a href="\(escape(link))">\(escape(namespace))</a></td><td class="num">\(members.count)</td><td class="num">\(live)</td>\(within.map { "<td class=\"num\">\($0)</td>" }.joined())<td class="num">\(left(first))</td></tr>
                    """
            }.joined()
            table = """
                <h2>Namespaces</h2>
                <table class="workloads"><thead><tr><th>namespace</th><th>identities</th><th>live</th>\(horizons.map { "<th>≤ \($0.wholeSeconds / 60) min</th>" }.joined())<th>soonest expiry in</th></tr></thead>
                <tbody>\(rows)</tbody></table>
                """
        }
        return """
            <p class="summary" data-live-total="\(total)">\(total) live certificates for \(identities.count) identities in \(byNamespace.count) namespaces.</p>
            <div class="buckets">\(buckets)</div>
            <h2>Expiring soonest</h2>
            <table class="soonest"><thead><tr><th>identity</th><th>live</th><th>soonest expiry</th><th>in</th></tr></thead><tbody>\(soonest)</tbody></table>
            \(table)
            """
    }

    // MARK: Activity

    static func activity(_ counts: [AuditCount], latestDenials: [AuditRecord], since: Date, now: Date) -> String {
        let minute = 60.0
        let first = Int64(since.timeIntervalSince1970 / minute)
        let minutes = Int(Int64(now.timeIntervalSince1970 / minute) - first) + 1
        var issued = [Int](repeating: 0, count: minutes)
        var denied = [Int](repeating: 0, count: minutes)
        var byCode: [String: Int] = [:]
        for count in counts {
            let index = Int(count.minute - first)
            guard issued.indices.contains(index) else { continue }
            switch count.action {
            case .issue, .renew: issued[index] += count.count
            case .deny:
                denied[index] += count.count
                byCode[count.code ?? "-", default: 0] += count.count
            default: break
            }
        }
        let peak = max(1, (issued + denied).max() ?? 1)
        var svg =
            "<svg class=\"activity\" viewBox=\"0 0 960 160\" role=\"img\" aria-label=\"issuances and denials per minute\">"
        let barWidth = 940.0 / Double(minutes)
        for index in 0..<minutes {
            let x = 10 + Double(index) * barWidth
            let at = Timestamp.seconds(Date(timeIntervalSince1970: Double(first + Int64(index)) * minute))
            func bar(_ kind: String, offset: Double, count: Int) -> String {
                let height = 130.0 * Double(count) / Double(peak)
                return "<rect class=\"\(kind)\" x=\"\(decimal(x + offset))\" y=\"\(decimal(140 - height))\" "
                    + "width=\"\(decimal(barWidth * 0.45))\" height=\"\(decimal(height))\"><title>\(at): \(count) \(kind)</title></rect>"
            }
            svg +=
                bar("issued", offset: 0, count: issued[index])
                + bar("denied", offset: barWidth * 0.5, count: denied[index])
        }
        svg +=
            "<text class=\"axis\" x=\"10\" y=\"156\">\(Timestamp.seconds(since))</text><text class=\"axis end\" x=\"950\" y=\"156\">now</text></svg>"
        let codes = byCode.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map {
            code -> String in
            "<tr data-code=\"\(escape(code.key))\"><td><code>\(escape(code.key))</code></td><td class=\"num\">\(code.value)</td></tr>"
        }.joined()
        let denials = latestDenials.map { record -> String in
            let event = record.event
            return
                "<tr><td class=\"num\">\(record.sequence)</td><td>\(Timestamp.seconds(event.time))</td><td><code>\(escape(event.code ?? "-"))</code></td><td>\(escape(event.actor))</td><td>\(escape(event.subject ?? ""))</td><td>\(escape(event.reason ?? ""))</td></tr>"
        }.joined()
        return """
            <p class="summary" data-issued="\(issued.reduce(0, +))" data-denied="\(denied.reduce(0, +))">Last hour, from the audit log: \(issued.reduce(0, +)) issued or renewed, \(denied.reduce(0, +)) denied (denials over the audit budget are in <code>deny_summary</code> records, not here).</p>
            \(svg)
            <p class="legend"><span class="swatch issued"></span>issued or renewed <span class="swatch denied"></span>denied</p>
            <h2>Denials by code</h2><table class="codes"><tbody>\(codes.isEmpty ? "<tr><td>none</td></tr>" : codes)</tbody></table>
            <h2>Latest denials</h2><table class="denials"><thead><tr><th>seq</th><th>time</th><th>code</th><th>actor</th><th>subject</th><th>reason</th></tr></thead><tbody>\(denials)</tbody></table>
            """
    }

    // MARK: Audit

    struct AuditFilters {
        var identity = ""
        var serial = ""
        var action = ""
        var outcome = ""
        var since = ""
        var until = ""

        var queryString: String {
            let pairs = [
                ("identity", identity), ("serial", serial), ("action", action), ("outcome", outcome), ("since", since),
                ("until", until),
            ].filter { !$0.1.isEmpty }
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~:")
            return pairs.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }
                .joined(separator: "&")
        }
    }

    static func audit(
        _ records: [AuditRecord], filters: AuditFilters, verification: String, verified: Bool, limit: Int
    ) -> String {
        func field(_ name: String, _ label: String, _ value: String, _ placeholder: String) -> String {
            "<label>\(label) <input name=\"\(name)\" value=\"\(escape(value))\" placeholder=\"\(escape(placeholder))\" maxlength=\"256\"></label>"
        }
        let actions = ([""] + AuditAction.allCases.map(\.rawValue)).map { action -> String in
            "<option value=\"\(action)\"\(action == filters.action ? " selected" : "")>\(action.isEmpty ? "any action" : action)</option>"
        }.joined()
        let outcomes = ["", "success", "failure"].map { outcome -> String in
            "<option value=\"\(outcome)\"\(outcome == filters.outcome ? " selected" : "")>\(outcome.isEmpty ? "any outcome" : outcome)</option>"
        }.joined()
        let rows = records.map { record -> String in
            let event = record.event
            return """
                <tr data-seq="\(record.sequence)" data-action="\(event.action.rawValue)"><td class="num">\(record.sequence)</td><td>\(Timestamp.microseconds(event.time))</td><td>\(event.action.rawValue)</td><td>\(event.outcome.rawValue)</td><td><code>\(escape(event.code ?? ""))</code></td><td>\(escape(event.subject ?? ""))</td><td><code>\(escape(event.serial ?? ""))</code></td><td>\(escape(event.actor))</td><td>\(escape(event.reason ?? ""))</td></tr>
                """
        }.joined()
        let query = filters.queryString
        return """
            <p class="verification \(verified ? "ok" : "broken")" data-verified="\(verified)">\(escape(verification))</p>
            <form method="get" action="/ui/audit" class="filters">
            \(field("identity", "identity", filters.identity, "spiffe://…"))\(field("serial", "serial", filters.serial, "hex"))
            <label>action <select name="action">\(actions)</select></label><label>outcome <select name="outcome">\(outcomes)</select></label>
            \(field("since", "since", filters.since, "2026-12-07T00:00:00Z"))\(field("until", "until", filters.until, "RFC 3339"))
            <button type="submit">Filter</button> <a class="export" href="/ui/audit/export\(query.isEmpty ? "" : "?" + query)">Export as JSON lines</a></form>
            <p class="summary">\(records.count) record(s), newest first\(records.count == limit ? " (the newest \(limit); narrow the filters or export for more)" : "").</p>
            <table class="audit"><thead><tr><th>seq</th><th>time</th><th>action</th><th>outcome</th><th>code</th><th>subject</th><th>serial</th><th>actor</th><th>reason</th></tr></thead><tbody>\(rows)</tbody></table>
            """
    }

    // MARK: Login

    static let login = """
        <p id="login-status">Signing in…</p>
        <p class="note">Operator pages (workloads, activity, audit) need a session. On the server, run
        <code>sigil admin console-login</code> (over the admin socket) and open the URL it prints within five minutes;
        it works once. The token after <code>#</code> never reaches the server's logs: this page posts it.</p>
        """

    static let signInNeeded = """
        <p>This page is for operators. On the server, run <code>sigil admin console-login</code> and open the one-time
        URL it prints (valid five minutes, once; the session lasts eight hours).</p>
        """
}
