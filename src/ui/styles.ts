/**
 * The UI's one style sheet, served as a hashed file by assets.ts (no inline styles: the CSP
 * forbids them). System fonts only; light and dark follow `prefers-color-scheme`; readable from
 * a 390 px phone to a laptop; every control shows its keyboard focus.
 */
export const STYLES = `
:root {
  --bg: #f7f8fa; --fg: #1b1f24; --muted: #5b6470; --card: #ffffff; --line: #d9dee5;
  --accent: #0b62d6; --accent-fg: #ffffff; --ok: #137a3f; --warn: #a05a00; --bad: #b42318;
  --badge: #eef1f5; --code: #f0f2f5; --bar: #0b62d6; --bar-bg: #e3e8ef; --focus: #ffbf47;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45; color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1216; --fg: #e6e9ee; --muted: #9aa4b1; --card: #171b21; --line: #2a313b;
    --accent: #5aa2ff; --accent-fg: #0b0e12; --ok: #4cc38a; --warn: #f0a64a; --bad: #ff7b72;
    --badge: #222933; --code: #1d232b; --bar: #5aa2ff; --bar-bg: #2a313b;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible, [tabindex]:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px;
}
.skip { position: absolute; left: -999px; top: 0; background: var(--card); padding: .5rem; }
.skip:focus { left: .5rem; z-index: 10; }
.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.25rem; padding: .6rem 1rem; background: var(--card); border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; font-size: 1.15rem; text-decoration: none; color: var(--fg); }
.top nav { display: flex; gap: .25rem; flex-wrap: wrap; }
.top nav a { padding: .35rem .6rem; border-radius: 6px; text-decoration: none; color: var(--fg); }
.top nav a[aria-current="page"] { background: var(--badge); font-weight: 600; }
.who { margin-left: auto; display: flex; gap: .5rem; align-items: center; color: var(--muted); font-size: .9rem; }
main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
main:focus { outline: none; }
h1 { font-size: 1.35rem; margin: .25rem 0 1rem; word-break: break-all; }
h2 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
.muted { color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: .75rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; }
.card h2 { margin-top: 0; font-size: .95rem; color: var(--muted); font-weight: 600; }
.big { font-size: 1.8rem; font-weight: 700; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.bar { height: 10px; background: var(--bar-bg); border-radius: 5px; overflow: hidden; margin: .4rem 0; }
.bar > span { display: block; height: 100%; background: var(--bar); }
.bar.warn > span { background: var(--warn); }
.bar.bad > span { background: var(--bad); }
.w0{width:0}.w5{width:5%}.w10{width:10%}.w15{width:15%}.w20{width:20%}.w25{width:25%}.w30{width:30%}.w35{width:35%}.w40{width:40%}.w45{width:45%}
.w50{width:50%}.w55{width:55%}.w60{width:60%}.w65{width:65%}.w70{width:70%}.w75{width:75%}.w80{width:80%}.w85{width:85%}.w90{width:90%}.w95{width:95%}.w100{width:100%}
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
code { background: var(--code); padding: .05rem .3rem; border-radius: 4px; word-break: break-all; }
pre { background: var(--code); padding: .75rem; border-radius: 6px; overflow: auto; max-height: 28rem; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: 999px; background: var(--badge); font-size: .78rem; margin: 0 .2rem .2rem 0; white-space: nowrap; }
.badge.ok { color: var(--ok); } .badge.warn { color: var(--warn); } .badge.bad { color: var(--bad); }
button, .button { font: inherit; padding: .4rem .8rem; border-radius: 6px; border: 1px solid var(--line); background: var(--card); color: var(--fg); cursor: pointer; min-height: 2.25rem; }
button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-fg); }
button.danger { border-color: var(--bad); color: var(--bad); }
button:disabled { opacity: .55; cursor: not-allowed; }
input[type="search"], input[type="text"], select { font: inherit; padding: .4rem .6rem; border-radius: 6px; border: 1px solid var(--line); background: var(--card); color: var(--fg); min-height: 2.25rem; }
label { font-size: .9rem; }
.search { display: flex; gap: .5rem; flex-wrap: wrap; margin-bottom: .75rem; }
.search input { flex: 1 1 14rem; }
.pager { display: flex; gap: .5rem; margin: .75rem 0; align-items: center; }
.confirm { border: 2px solid var(--bad); }
.list { margin: .25rem 0; padding-left: 1.1rem; }
.error { color: var(--bad); }
#toast { position: fixed; bottom: 1rem; left: 50%; transform: translateX(-50%); background: var(--fg); color: var(--bg); padding: .5rem 1rem; border-radius: 6px; display: none; max-width: 90vw; }
#toast.show { display: block; }
.scroll { overflow-x: auto; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; word-break: break-all; }
@media (max-width: 640px) {
  main { padding: .6rem; }
  .hide-narrow { display: none; }
  th, td { padding: .4rem; }
  .who { margin-left: 0; width: 100%; }
  .big { font-size: 1.5rem; }
}
`;
