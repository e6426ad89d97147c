/// The console's stylesheet and script, embedded in the binary and served from `/ui/assets/` only by these names
/// (no file system path is ever looked up). The script is the only one the pages load: refresh, copy buttons,
/// and the login exchange; it makes requests to this server only.
enum ConsoleAssets {
    static let files: [String: (contentType: String, body: String)] = [
        "console.css": ("text/css; charset=utf-8", css),
        "console.js": ("text/javascript; charset=utf-8", script),
        "favicon.svg": ("image/svg+xml", favicon),
    ]

    static let favicon = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2f5fd0"/>\
        <path d="M4 11l4-7 4 7z" fill="#fff"/></svg>
        """

    static let css = """
        :root { --ink: #1d2430; --muted: #5b6677; --line: #d8dee8; --bg: #f6f8fb; --accent: #2f5fd0;
          --ok: #1f7a45; --warn: #b85c00; --bad: #b3261e; --prep: #7a4fd0; --retired: #7b8494; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
        header { display: flex; flex-wrap: wrap; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
        .brand { font-weight: 700; letter-spacing: .04em; }
        .domain { color: var(--muted); }
        nav { display: flex; gap: .2rem; flex-wrap: wrap; }
        nav a { padding: .3rem .6rem; border-radius: 4px; color: var(--ink); text-decoration: none; }
        nav a[aria-current=page] { background: var(--accent); color: #fff; }
        .lock { color: var(--muted); font-size: .85em; }
        nav a[aria-current=page] .lock { color: #dfe6ff; }
        .logout { margin-left: auto; }
        main { padding: 1rem 1.2rem; max-width: 1200px; }
        h1 { font-size: 1.4rem; margin: .2rem 0 .8rem; }
        h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
        footer { padding: .8rem 1.2rem; color: var(--muted); font-size: .85em; }
        code { font: 12px/1.3 ui-monospace, "SFMono-Regular", Menlo, monospace; word-break: break-all; }
        .summary, .note, .legend { color: var(--muted); }
        ul.tree, ul.tree ul { list-style: none; padding-left: 1.6rem; border-left: 2px solid var(--line); }
        ul.tree { padding-left: 0; border: 0; }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; margin: .5rem 0; }
        .card .title { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
        .card dl { display: grid; grid-template-columns: 9rem 1fr; gap: .15rem .8rem; margin: .5rem 0 0; }
        .card dt { color: var(--muted); }
        .card dd { margin: 0; }
        .badge { font-size: .78em; padding: .05rem .45rem; border-radius: 999px; border: 1px solid var(--line); }
        .state-active { background: #e3f4ea; color: var(--ok); border-color: #b8e0c7; }
        .state-prepared { background: #efe8fb; color: var(--prep); border-color: #d6c8f3; }
        .state-retired { background: #eef0f3; color: var(--retired); }
        .state-tainted { background: #fff0e0; color: var(--warn); border-color: #f2cfa4; }
        .state-revoked { background: #fde7e6; color: var(--bad); border-color: #f3bcb8; }
        .key, .left { color: var(--muted); }
        button { font: inherit; padding: .15rem .6rem; border: 1px solid var(--line); border-radius: 4px; background: #fff; cursor: pointer; }
        button.copied { border-color: var(--ok); color: var(--ok); }
        svg { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
        svg .label, svg .axis { font-size: 11px; fill: var(--muted); }
        svg .axis.end { text-anchor: end; }
        svg .bar rect { fill: var(--accent); opacity: .75; }
        svg .bar.state-prepared rect { fill: var(--prep); }
        svg .bar.state-retired rect { fill: var(--retired); }
        svg .bar.state-tainted rect { fill: var(--warn); }
        svg .bar.state-revoked rect { fill: var(--bad); }
        svg .mark { stroke-width: 2; }
        svg .mark.prepare { stroke: var(--prep); }
        svg .mark.activate { stroke: var(--ok); }
        svg .now { stroke: var(--bad); stroke-dasharray: 4 3; }
        svg .event { fill: var(--bad); stroke: #fff; }
        svg rect.issued { fill: var(--ok); }
        svg rect.denied { fill: var(--bad); }
        .swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin: 0 .3rem 0 .8rem; vertical-align: middle; }
        .swatch.state-active { background: var(--accent); } .swatch.state-prepared { background: var(--prep); }
        .swatch.state-retired { background: var(--retired); } .swatch.state-tainted { background: var(--warn); }
        .swatch.state-revoked { background: var(--bad); }
        table.audit td:nth-child(2) { white-space: nowrap; }
        .swatch.prepare { background: var(--prep); } .swatch.activate, .swatch.issued { background: var(--ok); }
        .swatch.now, .swatch.event, .swatch.denied { background: var(--bad); }
        table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
        th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        tr.namespace th { background: var(--bg); }
        .warn { color: var(--warn); font-weight: 600; }
        .buckets { display: flex; gap: .8rem; margin: .6rem 0; flex-wrap: wrap; }
        .bucket { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .5rem .8rem; }
        .bucket .count { font-size: 1.4rem; font-weight: 700; margin-right: .3rem; }
        .filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin: .6rem 0; }
        .filters input, .filters select { font: inherit; padding: .15rem .3rem; }
        .verification.ok { color: var(--ok); } .verification.broken { color: var(--bad); font-weight: 700; }
        """

    static let script = """
        "use strict";
        // The login page: posts the one-time token of the URL's fragment (never sent to the server in a request
        // line, so never in a log) and lands on the operator pages.
        function exchange() {
          const status = document.getElementById("login-status");
          const token = new URLSearchParams(location.hash.slice(1)).get("token");
          history.replaceState(null, "", location.pathname);
          if (!token) {
            status.textContent = "No login token in this URL: run sigil admin console-login on the server.";
            return;
          }
          status.textContent = "Signing in…";
          fetch("/ui/session", { method: "POST", headers: { "Content-Type": "application/json" },
                                 body: JSON.stringify({ token }), credentials: "same-origin" })
            .then((response) => {
              if (response.ok) {
                location.replace("/ui/workloads");
              } else {
                status.textContent = "This login URL is expired or was already used: run sigil admin console-login again.";
                status.className = "refused";
              }
            });
        }
        document.addEventListener("DOMContentLoaded", () => {
          for (const button of document.querySelectorAll("button.copy")) {
            button.addEventListener("click", async () => {
              await navigator.clipboard.writeText(button.dataset.copy);
              button.classList.add("copied");
              button.textContent = "copied";
            });
          }
          const main = document.querySelector("main[data-refresh]");
          if (main) {
            setTimeout(() => location.reload(), Number(main.dataset.refresh) * 1000);
          }
          if (document.getElementById("login-status")) {
            exchange();
            // The same page opened again with another token changes only the fragment: no new load.
            window.addEventListener("hashchange", exchange);
          }
        });
        """
}
