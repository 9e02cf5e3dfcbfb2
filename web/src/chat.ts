// The chat panel: one WebSocket per room, NDJSON frames (see docs/chat.md). Every line is built from its
// fragments as text nodes, emote images and links: chat text never becomes markup.
import { api, enc, session } from "./api";
import { clear, h } from "./dom";

interface Badge {
  kind: string;
  tier?: number;
  months?: number;
}
interface Fragment {
  type: "text" | "emote" | "mention" | "link";
  text: string;
  username?: string;
  url?: string;
  emote?: { code: string; urls: Record<string, string> };
}
interface Message {
  id: string;
  sender: { id: string; username: string; badges: Badge[] };
  fragments: Fragment[];
  sent_at: string;
  action?: boolean;
}
interface Modes {
  slow_seconds: number;
  followers_only_minutes: number | null;
  subscribers_only: boolean;
  emote_only: boolean;
}
interface Me {
  user_id: string;
  username: string;
  badges: Badge[];
  blocked: string;
  blocked_until: string | null;
}
interface Emote {
  code: string;
  urls: Record<string, string>;
}

// A line refused with 503 is sent again (same nonce) this many times before the reader is told.
const MAX_RESENDS = 8;

const BADGE_LABEL: Record<string, string> = {
  broadcaster: "Broadcaster",
  moderator: "Moderator",
  vip: "VIP",
  subscriber: "Subscriber",
  admin: "Admin",
};

export function modesText(m: Modes): string {
  const on: string[] = [];
  if (m.slow_seconds) on.push(`Slow mode (${m.slow_seconds} s)`);
  if (m.followers_only_minutes !== null) on.push(m.followers_only_minutes ? `Followers only (${m.followers_only_minutes} min)` : "Followers only");
  if (m.subscribers_only) on.push("Subscribers only");
  if (m.emote_only) on.push("Emote only");
  return on.join(" · ");
}

function safeUrl(url: string): string | null {
  try {
    const u = new URL(url, location.origin);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch {
    return null;
  }
}

export class ChatPanel {
  readonly el: HTMLElement;
  private readonly log: HTMLElement;
  private readonly modes: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly send: HTMLButtonElement;
  private readonly notice: HTMLElement;
  private readonly picker: HTMLElement;
  private socket: WebSocket | null = null;
  private me: Me | null = null;
  private seen = new Set<string>();
  private pending = new Map<string, string>();
  private retries = new Map<string, number>(); // nonce -> times sent again after a 503
  private closed = false;
  private blockTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly channel: string) {
    this.log = h("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Chat messages" });
    this.modes = h("p", { class: "chat-modes", "data-testid": "chat-modes" });
    this.input = h("input", { name: "chat", maxlength: 500, autocomplete: "off", placeholder: "Send a message", "aria-label": "Chat message" });
    this.send = h("button", { type: "submit", class: "primary" }, "Chat");
    this.notice = h("p", { class: "chat-notice", role: "alert", "data-testid": "chat-notice", hidden: true });
    this.picker = h("div", { class: "emote-picker", hidden: true, role: "group", "aria-label": "Emotes" });
    const pickerButton = h("button", { type: "button", "aria-label": "Emotes", "aria-expanded": "false", class: "icon-button" }, "☺");
    pickerButton.addEventListener("click", () => {
      this.picker.hidden = !this.picker.hidden;
      pickerButton.setAttribute("aria-expanded", String(!this.picker.hidden));
    });
    const form = h("form", { class: "chat-form" }, this.picker, this.notice, h("div", { class: "chat-row" }, pickerButton, this.input, this.send));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.el = h("section", { class: "chat", "aria-labelledby": "chat-title" }, h("h2", { id: "chat-title" }, "Chat"), this.modes, this.log, form);
    this.setSignedOut();
    void this.loadEmotes();
    this.connect();
  }

  private setSignedOut(): void {
    if (session.token) return;
    this.input.disabled = true;
    this.send.disabled = true;
    this.input.placeholder = "Sign in to chat";
  }

  private async loadEmotes(): Promise<void> {
    const lists = await Promise.allSettled([
      api<{ items: Emote[] }>("/api/v1/emotes/global"),
      api<{ items: Emote[] }>(`/api/v1/channels/${enc(this.channel)}/emotes`),
    ]);
    for (const result of lists) {
      if (result.status !== "fulfilled") continue;
      for (const e of result.value.items) {
        const button = h("button", { type: "button", class: "emote-button", title: e.code, "aria-label": e.code }, h("img", { src: e.urls["1x"], alt: "", width: 28, height: 28 }));
        button.addEventListener("click", () => {
          this.input.value = `${this.input.value.trimEnd()} ${e.code} `.trimStart();
          this.input.focus();
        });
        this.picker.append(button);
      }
    }
  }

  private connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/channels/${enc(this.channel)}/chat`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify(session.token ? { type: "hello", token: session.token } : { type: "hello" }));
    socket.onmessage = (event) => {
      for (const line of String(event.data).split("\n")) if (line.trim()) this.handle(JSON.parse(line));
    };
    socket.onclose = () => {
      this.el.removeAttribute("data-connected");
      if (!this.closed) setTimeout(() => this.connect(), 2000);
    };
  }

  private handle(frame: Record<string, any>): void {
    switch (frame.type) {
      case "welcome":
        this.me = frame.me;
        this.el.setAttribute("data-connected", "true");
        this.showModes(frame.modes);
        clear(this.log);
        this.seen.clear();
        (frame.history as Message[]).forEach((m) => this.add(m));
        if (this.me?.blocked) this.block(this.me.blocked, this.me.blocked_until);
        for (const [nonce, text] of this.pending) this.socket?.send(JSON.stringify({ type: "send", nonce, text }));
        break;
      case "message":
        this.add(frame as unknown as Message);
        break;
      case "deleted":
        this.log.querySelector(`[data-id="${CSS.escape(frame.id)}"]`)?.remove();
        break;
      case "cleared":
        clear(this.log);
        break;
      case "purged":
        this.log.querySelectorAll(`[data-user="${CSS.escape(frame.user_id)}"]`).forEach((el) => el.remove());
        if (this.me && frame.user_id === this.me.user_id) {
          this.block(frame.until ? "You are timed out." : "You are banned from this chat.", frame.until);
        }
        break;
      case "modes":
        this.showModes(frame.modes);
        break;
      case "ack":
        this.pending.delete(frame.nonce);
        this.retries.delete(frame.nonce);
        if (frame.kind === "command" && frame.detail) this.say(frame.detail, false);
        break;
      case "error":
        if (frame.nonce && frame.status === 503 && this.pending.has(frame.nonce)) {
          // The chat service could not take the line just now (a restart, a stream electing its leader):
          // send it again under the same nonce, which the server makes the same message, so it lands once.
          this.resend(frame.nonce, frame.retry_after);
          break;
        }
        if (frame.nonce) this.pending.delete(frame.nonce);
        if (frame.code === "timed_out" || frame.code === "banned") this.block(frame.detail, frame.retry_at ?? null);
        else this.say(frame.detail, true);
        break;
    }
  }

  private resend(nonce: string, retryAfter: number | undefined): void {
    const tries = (this.retries.get(nonce) ?? 0) + 1;
    this.retries.set(nonce, tries);
    if (tries > MAX_RESENDS) {
      this.pending.delete(nonce);
      this.retries.delete(nonce);
      this.say("Chat is unavailable right now; your message was not sent.", true);
      return;
    }
    const delay = Math.min(5000, Math.max(250, (retryAfter ?? 0.5 * tries) * 1000));
    setTimeout(() => {
      const text = this.pending.get(nonce);
      if (text !== undefined) this.socket?.send(JSON.stringify({ type: "send", nonce, text }));
    }, delay);
  }

  private showModes(m: Modes): void {
    const text = modesText(m);
    this.modes.textContent = text;
    this.modes.hidden = !text;
  }

  private say(text: string, error: boolean): void {
    this.notice.textContent = text;
    this.notice.hidden = false;
    this.notice.classList.toggle("error", error);
  }

  private block(reason: string, until: string | null): void {
    const end = until ? new Date(until) : null;
    this.input.disabled = true;
    this.send.disabled = true;
    this.input.placeholder = end ? `Timed out until ${end.toLocaleTimeString()}` : "You cannot chat here";
    this.say(end ? `${reason} You can chat again at ${end.toLocaleTimeString()}.` : reason, true);
    this.el.setAttribute("data-blocked", "true");
    clearTimeout(this.blockTimer);
    if (end) this.blockTimer = setTimeout(() => this.unblock(), Math.max(0, end.getTime() - Date.now()));
  }

  private unblock(): void {
    this.input.disabled = false;
    this.send.disabled = false;
    this.input.placeholder = "Send a message";
    this.notice.hidden = true;
    this.el.removeAttribute("data-blocked");
  }

  private submit(): void {
    const text = this.input.value.trim();
    if (!text || !this.socket) return;
    const nonce = crypto.randomUUID();
    this.pending.set(nonce, text);
    this.socket.send(JSON.stringify({ type: "send", nonce, text }));
    this.input.value = "";
    this.notice.hidden = true;
  }

  private canModerate(m: Message): boolean {
    const mine = new Set((this.me?.badges ?? []).map((b) => b.kind));
    const theirs = new Set(m.sender.badges.map((b) => b.kind));
    if (!this.me || m.sender.id === this.me.user_id || theirs.has("broadcaster")) return false;
    if (mine.has("broadcaster")) return true;
    return mine.has("moderator") && !theirs.has("moderator");
  }

  private command(text: string): void {
    this.socket?.send(JSON.stringify({ type: "send", nonce: crypto.randomUUID(), text }));
  }

  private modMenu(m: Message): HTMLElement {
    const user = m.sender.username;
    const menu = h("div", { class: "mod-menu", role: "menu", hidden: true });
    const actions: [string, string][] = [
      ["Delete message", `/delete ${m.id}`],
      ["Timeout 10 minutes", `/timeout ${user} 600`],
      ["Ban", `/ban ${user}`],
    ];
    const toggle = h("button", { type: "button", class: "icon-button mod-toggle", "aria-haspopup": "menu", "aria-expanded": "false", "aria-label": `Moderate ${user}` }, "⋯");
    const close = (): void => {
      menu.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
    };
    for (const [label, text] of actions) {
      menu.append(h("button", { type: "button", role: "menuitem", onclick: () => (this.command(text), close(), toggle.focus()) }, label));
    }
    toggle.addEventListener("click", () => {
      menu.hidden = !menu.hidden;
      toggle.setAttribute("aria-expanded", String(!menu.hidden));
      if (!menu.hidden) (menu.firstElementChild as HTMLElement).focus();
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape") (close(), toggle.focus());
    });
    return h("span", { class: "mod" }, toggle, menu);
  }

  private add(m: Message): void {
    if (this.seen.has(m.id)) return;
    this.seen.add(m.id);
    const me = this.me?.username.toLowerCase();
    const mentioned = !!me && m.fragments.some((f) => f.type === "mention" && f.username?.toLowerCase() === me);
    const body = h("span", { class: "chat-text" });
    for (const f of m.fragments) {
      if (f.type === "emote" && f.emote) {
        body.append(h("img", { class: "emote", src: f.emote.urls["1x"], srcset: `${f.emote.urls["2x"]} 2x, ${f.emote.urls["4x"]} 4x`, alt: f.text, title: f.text, width: 28, height: 28 }));
      } else if (f.type === "link" && f.url && safeUrl(f.url)) {
        body.append(h("a", { href: safeUrl(f.url)!, rel: "noopener noreferrer nofollow", target: "_blank" }, f.text));
      } else if (f.type === "mention") {
        body.append(h("strong", { class: "mention" }, f.text));
      } else {
        body.append(f.text);
      }
    }
    const badges = m.sender.badges.map((b) => h("span", { class: `chat-badge badge-${b.kind}`, title: BADGE_LABEL[b.kind] ?? b.kind }, (BADGE_LABEL[b.kind] ?? b.kind).slice(0, 3)));
    const line = h(
      "li",
      { class: `chat-line${mentioned ? " mentioned" : ""}${m.action ? " action" : ""}`, "data-id": m.id, "data-user": m.sender.id },
      this.canModerate(m) ? this.modMenu(m) : null,
      badges,
      h("strong", { class: "chat-user" }, m.sender.username),
      m.action ? " " : ": ",
      body,
    );
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(line);
    while (this.log.children.length > 300) this.log.firstElementChild?.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  destroy(): void {
    this.closed = true;
    clearTimeout(this.blockTimer);
    this.socket?.close();
  }
}
