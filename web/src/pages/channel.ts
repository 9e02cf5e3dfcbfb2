import { api, ApiError, enc, imageUrl, session, type Channel } from "../api";
import { ChatPanel } from "../chat";
import { field, h, timeAgo, toast } from "../dom";
import { Player } from "../player";

interface Relationship {
  is_owner: boolean;
  following: boolean;
  subscription: { tier: number; cumulative_months: number } | null;
}
/** A recording as `GET /api/v1/channels/{name}/recordings` lists it (proto/transcode.py Recording). */
interface Recording {
  id: string;
  started_at: string;
  duration_ms: number;
  manifest_url: string;
}

function followButton(name: string, rel: Relationship | null, onChange: () => void): HTMLElement {
  const following = rel?.following ?? false;
  const button = h("button", { type: "button", class: following ? "" : "primary", "aria-pressed": String(following) }, following ? "Unfollow" : "Follow");
  button.addEventListener("click", async () => {
    if (!session.user) return void (location.href = `/signin?next=/${enc(name)}`);
    try {
      await api(`/api/v1/channels/${enc(name)}/follow`, following ? "DELETE" : "POST");
      toast(following ? `Unfollowed ${name}.` : `Following ${name}.`);
      onChange();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  });
  return button;
}

function subscribeDialog(name: string): HTMLDialogElement {
  const tier = h("select", {}, h("option", { value: "1" }, "Tier 1"), h("option", { value: "2" }, "Tier 2"), h("option", { value: "3" }, "Tier 3"));
  const giftTo = h("input", { name: "gift_to", placeholder: "username (empty: a random viewer)" });
  const status = h("p", { role: "status" });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "sub-title" },
    h("h2", { id: "sub-title" }, `Subscribe to ${name}`),
    h("p", {}, "Subscriptions are sold through the operator's payment provider; here you can gift one."),
    field("Tier", tier),
    field("Gift to", giftTo),
    status,
  );
  const send = h("button", { type: "button", class: "primary" }, "Gift a subscription");
  send.addEventListener("click", async () => {
    const body = giftTo.value.trim() ? { tier: Number(tier.value), gift_to: giftTo.value.trim() } : { tier: Number(tier.value), gift_count: 1 };
    try {
      await api(`/api/v1/channels/${enc(name)}/subscriptions`, "POST", body);
      status.textContent = "Gift sent. Thank you!";
    } catch (err) {
      status.textContent = (err as Error).message;
    }
  });
  dialog.append(h("div", { class: "row" }, send, h("button", { type: "button", onclick: () => dialog.close() }, "Close")));
  return dialog;
}

async function recordings(name: string, watch: (manifestUrl: string) => void): Promise<HTMLElement | null> {
  try {
    const page = await api<{ items: Recording[] }>(`/api/v1/channels/${enc(name)}/recordings`);
    if (!page.items.length) return null;
    return h(
      "section",
      { class: "card" },
      h("h2", {}, "Recordings"),
      h(
        "ul",
        { class: "recordings" },
        page.items.map((r) => {
          const minutes = Math.max(1, Math.round(r.duration_ms / 60000));
          const label = `Broadcast · ${timeAgo(r.started_at)} · ${minutes} min`;
          const button = h("button", { type: "button", class: "small" }, "Watch");
          button.addEventListener("click", () => watch(r.manifest_url));
          return h("li", {}, label, " ", button);
        }),
      ),
    );
  } catch {
    return null; // no recordings service yet, or none kept
  }
}

export async function channelPage(main: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const name = params.name;
  let channel: Channel;
  try {
    channel = await api<Channel>(`/api/v1/channels/${enc(name)}`);
  } catch (err) {
    main.append(h("h1", {}, err instanceof ApiError && err.status === 404 ? "No such channel" : "Could not load the channel"), h("p", {}, (err as Error).message), h("a", { href: "/", "data-link": true }, "Back to the directory"));
    return () => undefined;
  }
  const player = new Player(name);
  const chat = new ChatPanel(name);
  const viewers = h("span", { class: "viewers", "data-testid": "viewers" });
  const state = h("span", { class: channel.live ? "live-pill" : "offline-pill", "data-testid": "live-state" }, channel.live ? "LIVE" : "Offline");
  const actions = h("div", { class: "row actions" });
  const counts = h("span", { class: "muted" });
  const dialog = subscribeDialog(name);
  const banner = imageUrl(channel, "banner");
  const avatar = imageUrl(channel, "avatar");
  const offline = h("div", { class: "offline", hidden: channel.live }, banner ? h("img", { src: banner, alt: `${name} banner` }) : null, h("p", {}, `${name} is offline.`));

  const refreshSocial = async (): Promise<void> => {
    const rel = session.user ? await api<Relationship>(`/api/v1/channels/${enc(name)}/relationship`).catch(() => null) : null;
    const c = await api<{ followers: number; subscribers: number }>(`/api/v1/channels/${enc(name)}/counts`).catch(() => null);
    counts.textContent = c ? `${c.followers} followers · ${c.subscribers} subscribers` : "";
    actions.replaceChildren();
    if (!rel?.is_owner) {
      actions.append(followButton(name, rel, () => void refreshSocial()));
      const sub = rel?.subscription;
      actions.append(h("button", { type: "button", onclick: () => (session.user ? dialog.showModal() : (location.href = `/signin?next=/${enc(name)}`)) }, sub ? `Subscribed · tier ${sub.tier} · ${sub.cumulative_months} mo` : "Subscribe"));
    }
  };
  let wasLive = channel.live;
  const poll = async (): Promise<void> => {
    const c = await api<Channel>(`/api/v1/channels/${enc(name)}`).catch(() => null);
    if (c && c.live !== wasLive) {
      wasLive = c.live;
      state.textContent = c.live ? "LIVE" : "Offline";
      state.className = c.live ? "live-pill" : "offline-pill";
      offline.hidden = c.live;
      player.el.hidden = !c.live;
      if (c.live) void player.play("webrtc");
      else player.showOffline();
    }
    if (wasLive) {
      const v = await api<{ viewers: number }>(`/api/v1/channels/${enc(name)}/viewers`).catch(() => null);
      viewers.textContent = v ? `${v.viewers} watching` : "";
    } else viewers.textContent = "";
  };
  player.el.hidden = !channel.live;
  const watch = h("div", { class: "watch" }, player.el, offline);
  main.append(
    h(
      "div",
      { class: "channel-layout" },
      h(
        "div",
        { class: "channel-main" },
        watch,
        h(
          "div",
          { class: "channel-head" },
          avatar ? h("img", { class: "avatar", src: avatar, alt: "", width: 56, height: 56 }) : h("span", { class: "avatar avatar-empty", "aria-hidden": "true" }),
          h("div", { class: "grow" }, h("h1", {}, channel.title), h("p", {}, h("strong", {}, name), " · ", channel.category, " ", state, " ", viewers), h("p", { class: "tags" }, channel.tags.map((t) => h("span", { class: "tag" }, t))), counts),
          actions,
        ),
        channel.description ? h("p", { class: "description" }, channel.description) : null,
        dialog,
      ),
      chat.el,
    ),
  );
  void refreshSocial();
  if (channel.live) void player.play(new URLSearchParams(location.search).get("player") === "dash" ? "dash" : "webrtc");
  else {
    const watch = (url: string) => {
      offline.hidden = true;
      player.el.hidden = false;
      void player.playRecording(url);
    };
    void recordings(name, watch).then((r) => r && offline.after(r));
  }
  void poll();
  const timer = setInterval(() => void poll(), 3000);
  return () => {
    clearInterval(timer);
    player.destroy();
    chat.destroy();
  };
}
