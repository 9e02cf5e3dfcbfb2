import { api, ApiError, enc, raw, session, type Channel } from "../api";
import { field, h, toast } from "../dom";
import { navigate } from "../router";
import { whip } from "../webrtc";
import { analyticsCard } from "./dashboard-analytics";
import { brandingCard, emotesCard, rolesCard, termsCard } from "./manage";

const keyStore = (name: string): string => `cpc.key.${name}`;

async function myChannel(user: string): Promise<Channel | null> {
  const remembered = localStorage.getItem(`cpc.channel.${user}`) ?? user;
  try {
    const c = await api<Channel>(`/api/v1/channels/${enc(remembered)}`);
    if (c.owner_username === user) return c;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
  }
  // Not remembered in this browser: search for a channel owned by this user.
  const found = await api<{ items: Channel[] }>(`/api/v1/channels?q=${enc(user)}&limit=50`);
  const mine = found.items.find((c) => c.owner_username === user);
  if (mine) localStorage.setItem(`cpc.channel.${user}`, mine.name);
  return mine ? api<Channel>(`/api/v1/channels/${enc(mine.name)}`) : null;
}

function createForm(user: string): HTMLElement {
  const name = h("input", { name: "name", value: user, required: true, minlength: 3, maxlength: 25 });
  const title = h("input", { name: "title", required: true, maxlength: 140 });
  const category = h("input", { name: "category", required: true, placeholder: "Just Chatting" });
  const tags = h("input", { name: "tags", placeholder: "chill, english" });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "card narrow" },
    h("h1", {}, "Create your channel"),
    error,
    field("Channel name", name, "Your page will be at /name."),
    field("Title", title),
    field("Category", category),
    field("Tags", tags, "Comma-separated."),
    h("button", { type: "submit", class: "primary" }, "Create channel"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const c = await api<Channel>("/api/v1/channels", "POST", {
        name: name.value.trim(),
        title: title.value.trim(),
        category: category.value.trim(),
        tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      });
      localStorage.setItem(`cpc.channel.${user}`, c.name);
      navigate("/dashboard", true);
    } catch (err) {
      error.textContent = (err as Error).message;
      error.hidden = false;
    }
  });
  return form;
}

async function rotateKey(name: string): Promise<string> {
  const { stream_key } = await api<{ stream_key: string }>(`/api/v1/channels/${enc(name)}/stream-key`, "POST");
  localStorage.setItem(keyStore(name), stream_key);
  return stream_key;
}

function keyCard(c: Channel): HTMLElement {
  const server = h("input", { readonly: true, value: `${location.origin}/api/v1/channels/${c.name}/whip` });
  const key = h("input", { readonly: true, type: "password", value: localStorage.getItem(keyStore(c.name)) ?? "", placeholder: c.stream_key_prefix ? `${c.stream_key_prefix}… (rotate to see a new key)` : "No key yet: rotate to create one" });
  const copy = (input: HTMLInputElement, what: string) => async () => {
    if (!input.value) return toast(`No ${what} to copy yet.`, "error");
    await navigator.clipboard.writeText(input.value).catch(() => input.select());
    toast(`${what} copied.`);
  };
  const show = h("button", { type: "button", "aria-pressed": "false", onclick: () => { const hidden = key.type === "password"; key.type = hidden ? "text" : "password"; show.setAttribute("aria-pressed", String(hidden)); show.textContent = hidden ? "Hide" : "Show"; } }, "Show");
  const rotate = h("button", { type: "button", onclick: async () => {
    if (key.value && !confirm("Rotate the stream key? The old key stops working at once.")) return;
    key.value = await rotateKey(c.name);
    toast("New stream key created.");
  } }, "Rotate key");
  return h(
    "section",
    { class: "card", "aria-labelledby": "obs-title" },
    h("h2", { id: "obs-title" }, "Stream with OBS (WHIP)"),
    h("p", {}, "In OBS: Settings → Stream → Service: WHIP. Paste the server URL and the stream key (Bearer token)."),
    field("Server URL", server),
    h("div", { class: "row" }, h("button", { type: "button", onclick: copy(server, "Server URL") }, "Copy URL")),
    field("Stream key", key),
    h("div", { class: "row" }, show, h("button", { type: "button", onclick: copy(key, "Stream key") }, "Copy key"), rotate),
  );
}

function goLiveCard(c: Channel, onLive: () => void): HTMLElement {
  const preview = h("video", { autoplay: true, muted: true, playsinline: true, class: "preview", "aria-label": "Your camera preview" });
  const status = h("p", { role: "status", "data-testid": "broadcast-status" }, c.live ? "Your channel is live." : "Offline.");
  let session_: { pc: RTCPeerConnection; location: string } | null = null;
  let media: MediaStream | null = null;
  const stop = h("button", { type: "button", hidden: true }, "End stream");
  const start = async (source: "camera" | "screen"): Promise<void> => {
    try {
      media = source === "camera" ? await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true }) : await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
      preview.srcObject = media;
      const key = localStorage.getItem(keyStore(c.name)) ?? (await rotateKey(c.name));
      status.textContent = "Connecting…";
      session_ = await whip(c.name, key, media);
      session_.pc.onconnectionstatechange = () => {
        if (session_?.pc.connectionState === "connected") {
          status.textContent = "You are live.";
          onLive();
        }
      };
      stop.hidden = false;
    } catch (err) {
      media?.getTracks().forEach((t) => t.stop());
      status.textContent = err instanceof ApiError && err.status === 401 ? "The saved stream key was rotated elsewhere: rotate it here and try again." : `Could not go live: ${(err as Error).message}`;
    }
  };
  stop.addEventListener("click", async () => {
    if (session_) await raw(session_.location, { method: "DELETE" }).catch(() => undefined);
    session_?.pc.close();
    media?.getTracks().forEach((t) => t.stop());
    session_ = null;
    stop.hidden = true;
    status.textContent = "Stream ended.";
  });
  const card = h(
    "section",
    { class: "card", "aria-labelledby": "live-title" },
    h("h2", { id: "live-title" }, "Go live from this browser"),
    preview,
    status,
    h("div", { class: "row" }, h("button", { type: "button", class: "primary", onclick: () => void start("camera") }, "Go live with camera"), h("button", { type: "button", onclick: () => void start("screen") }, "Share screen"), stop),
  );
  (card as HTMLElement & { stop?: () => void }).stop = () => stop.click();
  return card;
}

function infoCard(c: Channel): HTMLElement {
  const title = h("input", { value: c.title, maxlength: 140 });
  const category = h("input", { value: c.category });
  const tags = h("input", { value: c.tags.join(", ") });
  const description = h("textarea", { rows: 3 }, c.description);
  const form = h("form", { class: "card" }, h("h2", {}, "Stream info"), field("Title", title), field("Category", category), field("Tags", tags, "Comma-separated."), field("Description", description), h("button", { type: "submit", class: "primary" }, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/api/v1/channels/${enc(c.name)}`, "PATCH", { title: title.value.trim(), category: category.value.trim(), description: description.value, tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) });
      toast("Saved.");
    } catch (err) {
      toast((err as Error).message, "error");
    }
  });
  return form;
}

export async function dashboardPage(main: HTMLElement): Promise<void | (() => void)> {
  const user = session.user;
  if (!user) return navigate("/signin?next=/dashboard", true);
  const c = await myChannel(user);
  if (!c) return void main.append(createForm(user));
  const stats = analyticsCard(c);
  const live = goLiveCard(c, () => toast("You are live."));
  main.append(
    h("div", { class: "dash-head" }, h("h1", {}, "Creator dashboard"), h("a", { href: `/${enc(c.name)}`, "data-link": true }, "View channel")),
    h("div", { class: "dash-grid" }, live, keyCard(c), infoCard(c), brandingCard(c), stats.el, rolesCard(c), emotesCard(c), termsCard(c)),
  );
  return () => {
    stats.stop();
    (live as HTMLElement & { stop?: () => void }).stop?.();
  };
}
