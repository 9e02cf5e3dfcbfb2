// The dashboard's analytics card: viewer curves of the current and past sessions (edge) and the daily
// audience (social), both computed by the services from their own records.
import { api, enc, type Channel } from "../api";
import { lineChart, linesChart } from "../charts";
import { field, h } from "../dom";

interface SessionSummary {
  session_id: string;
  started_at: string;
  ended_at: string | null;
}

interface ViewerHistory {
  sessions: SessionSummary[];
  curve: {
    session_id: string;
    bucket_seconds: number;
    points: { at: string; viewers: number }[];
    peak: number;
    average: number;
    ended_at: string | null;
  } | null;
}

interface AudienceHistory {
  points: { day: string; followers: number; subscribers: number }[];
}

const LIVE_REFRESH_MS = 15000;

function sessionLabel(s: SessionSummary): string {
  const start = new Date(s.started_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  return s.ended_at ? start : `${start} (live)`;
}

// A bucket that gives about 120 points over the session so far.
function bucketFor(s: SessionSummary | undefined): number {
  if (!s) return 60;
  const end = s.ended_at ? Date.parse(s.ended_at) : Date.now();
  return Math.max(5, Math.ceil((end - Date.parse(s.started_at)) / 1000 / 120));
}

function viewersSection(c: Channel): { el: HTMLElement; stop: () => void } {
  const picker = h("select", { "aria-label": "Session", "data-testid": "session-picker" });
  const box = h("div", { "data-testid": "viewer-chart" });
  const pickerField = field("Session", picker);
  pickerField.hidden = true;
  let sessions: SessionSummary[] = [];
  const draw = async (): Promise<void> => {
    const chosen = sessions.find((s) => s.session_id === picker.value) ?? sessions[0];
    const query = `bucket=${bucketFor(chosen)}${picker.value ? `&session=${enc(picker.value)}` : ""}`;
    const r = await api<ViewerHistory>(`/api/v1/channels/${enc(c.name)}/analytics/viewers?${query}`);
    if (r.sessions.length !== sessions.length || r.sessions[0]?.session_id !== sessions[0]?.session_id || r.sessions[0]?.ended_at !== sessions[0]?.ended_at) {
      const keep = picker.value;
      sessions = r.sessions;
      picker.replaceChildren(...sessions.map((s) => h("option", { value: s.session_id }, sessionLabel(s))));
      picker.value = keep && sessions.some((s) => s.session_id === keep) ? keep : (sessions[0]?.session_id ?? "");
      pickerField.hidden = sessions.length === 0;
    }
    if (!r.curve) return void box.replaceChildren(lineChart("Viewers per session", []));
    const points = r.curve.points.map((p) => ({ t: Date.parse(p.at), v: p.viewers }));
    const title = r.curve.ended_at ? "Viewers, past session" : "Viewers, this session";
    box.replaceChildren(
      lineChart(title, points),
      h("p", { class: "chart-stats", "data-testid": "viewer-stats" }, `Peak ${r.curve.peak} · average ${r.curve.average.toFixed(1)}`),
    );
  };
  const refresh = (): void => void draw().catch((err: Error) => box.replaceChildren(h("p", { class: "form-error" }, err.message)));
  picker.addEventListener("change", refresh);
  refresh();
  // Only the live session changes: redraw while the chosen session is live (or when a new one starts).
  const timer = setInterval(() => {
    const chosen = sessions.find((s) => s.session_id === picker.value);
    if (!chosen || !chosen.ended_at || picker.value === sessions[0]?.session_id) refresh();
  }, LIVE_REFRESH_MS);
  return { el: h("div", {}, pickerField, box), stop: () => clearInterval(timer) };
}

function audienceSection(c: Channel): HTMLElement {
  const box = h("div", { "data-testid": "audience-chart" }, lineChart("Followers and subscribers, last 30 days", []));
  void api<AudienceHistory>(`/api/v1/channels/${enc(c.name)}/analytics/audience?days=30`)
    .then((r) => {
      const at = (day: string): number => Date.parse(`${day}T00:00:00Z`);
      box.replaceChildren(
        linesChart("Followers and subscribers, last 30 days", [
          { label: "Followers", points: r.points.map((p) => ({ t: at(p.day), v: p.followers })) },
          { label: "Subscribers", points: r.points.map((p) => ({ t: at(p.day), v: p.subscribers })) },
        ], { days: true }),
      );
    })
    .catch((err: Error) => box.replaceChildren(h("p", { class: "form-error" }, err.message)));
  return box;
}

export function analyticsCard(c: Channel): { el: HTMLElement; stop: () => void } {
  const viewers = viewersSection(c);
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "stats-title", "data-testid": "analytics" },
    h("h2", { id: "stats-title" }, "Analytics"),
    h("div", { class: "charts" }, viewers.el, audienceSection(c)),
  );
  return { el, stop: viewers.stop };
}
