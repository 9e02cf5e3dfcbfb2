// The notifications bell: unread count, a list, and live updates over server-sent events opened with a
// single-use ticket (EventSource cannot send an Authorization header).
import { api, session, type Notification } from "./api";
import { clear, h, timeAgo, toast } from "./dom";

interface Inbox {
  items: Notification[];
  unread_count: number;
}

function describe(n: Notification): string {
  switch (n.kind) {
    case "live":
      return `${n.channel_name} is live`;
    case "social.channel.followed":
      return `${n.actor_username} followed ${n.channel_name}`;
    case "social.subscription.started":
      return `${n.actor_username} subscribed to ${n.channel_name} (tier ${n.tier})`;
    default:
      return `${n.kind} on ${n.channel_name}`;
  }
}

function bellIcon(): SVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const icon = document.createElementNS(ns, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("class", "bell-icon");
  icon.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z");
  icon.append(path);
  return icon;
}

export function bell(): { el: HTMLElement; stop: () => void } {
  const count = h("span", { class: "badge-count", hidden: true, "aria-hidden": "true" });
  const button = h(
    "button",
    { class: "icon-button", "aria-label": "Notifications", "aria-expanded": "false", "aria-controls": "bell-panel" },
    bellIcon(),
    count,
  );
  const list = h("ul", { class: "bell-list" });
  const panel = h("div", { id: "bell-panel", class: "bell-panel", hidden: true }, h("h2", {}, "Notifications"), list);
  const el = h("div", { class: "bell" }, button, panel);
  let unread = 0;
  let source: EventSource | null = null;
  let stopped = false;
  let retry: ReturnType<typeof setTimeout> | undefined;

  const setCount = (n: number): void => {
    unread = n;
    count.textContent = String(n);
    count.hidden = n === 0;
    button.setAttribute("aria-label", n ? `Notifications, ${n} unread` : "Notifications");
  };
  const item = (n: Notification): HTMLElement =>
    h(
      "li",
      { class: n.read ? "" : "unread" },
      h("a", { href: `/${encodeURIComponent(n.channel_name)}`, "data-link": true }, describe(n)),
      h("time", { datetime: n.created_at }, timeAgo(n.created_at)),
    );
  const load = async (): Promise<void> => {
    const inbox = await api<Inbox>("/api/v1/notifications?limit=20");
    clear(list);
    if (!inbox.items.length) list.append(h("li", { class: "muted" }, "Nothing yet."));
    inbox.items.forEach((n) => list.append(item(n)));
    setCount(inbox.unread_count);
  };
  const connect = async (): Promise<void> => {
    if (stopped || !session.token) return;
    try {
      const { ticket } = await api<{ ticket: string }>("/api/v1/notifications/stream-ticket", "POST");
      source = new EventSource(`/api/v1/notifications/stream?ticket=${encodeURIComponent(ticket)}`);
      source.addEventListener("ready", () => el.setAttribute("data-live", "true"));
      source.addEventListener("notification", (event) => {
        const n = JSON.parse((event as MessageEvent).data) as Notification;
        list.querySelector(".muted")?.remove();
        list.prepend(item(n));
        setCount(unread + 1);
        toast(describe(n));
      });
      source.onerror = () => {
        // Tickets are single-use: reconnect with a new one instead of EventSource's own retry.
        source?.close();
        el.removeAttribute("data-live");
        if (!stopped) retry = setTimeout(() => void connect(), 3000);
      };
    } catch {
      if (!stopped) retry = setTimeout(() => void connect(), 5000);
    }
  };
  button.addEventListener("click", async () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open && unread) {
      await api("/api/v1/notifications/read", "POST", { all: true });
      setCount(0);
    }
  });
  el.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
  void load().then(connect);
  return {
    el,
    stop: () => {
      stopped = true;
      clearTimeout(retry);
      source?.close();
    },
  };
}
