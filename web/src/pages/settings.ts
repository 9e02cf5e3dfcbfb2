import { api, session } from "../api";
import { field, h, toast } from "../dom";
import { navigate } from "../router";

interface Preferences {
  enabled: boolean;
  muted_channels: string[];
  push_all: boolean;
  push_channels: string[];
}

function urlBase64ToUint8Array(base64: string): Uint8Array<ArrayBuffer> {
  const padded = (base64 + "=".repeat((4 - (base64.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(padded);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

async function enablePush(): Promise<string> {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return "This browser has no Web Push.";
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return "Notifications are blocked for this site.";
  const { public_key } = await api<{ public_key: string }>("/api/v1/push/vapid-public-key");
  const registration = await navigator.serviceWorker.ready;
  const sub = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: urlBase64ToUint8Array(public_key),
  });
  const json = sub.toJSON();
  await api("/api/v1/push/subscriptions", "POST", { endpoint: json.endpoint, keys: json.keys });
  return "Push notifications are on for this browser.";
}

const list = (value: string): string[] =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

export async function settingsPage(main: HTMLElement): Promise<void> {
  if (!session.user) return navigate("/signin?next=/settings", true);
  const prefs = await api<Preferences>("/api/v1/me/notification-preferences");
  const enabled = h("input", { type: "checkbox", checked: prefs.enabled });
  const pushAll = h("input", { type: "checkbox", checked: prefs.push_all });
  const muted = h("input", { value: prefs.muted_channels.join(", ") });
  const pushChannels = h("input", { value: prefs.push_channels.join(", ") });
  const status = h("p", { role: "status" });
  const form = h(
    "form",
    { class: "card" },
    h("h2", {}, "Notifications"),
    h("label", { class: "check" }, enabled, " Notify me when channels I follow go live"),
    field("Muted channels", muted, "Comma-separated channel names."),
    h("label", { class: "check" }, pushAll, " Push for every followed channel"),
    field("Push only for", pushChannels, "Used when the box above is off."),
    h("button", { type: "submit", class: "primary" }, "Save"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await api("/api/v1/me/notification-preferences", "PUT", {
      enabled: enabled.checked,
      muted_channels: list(muted.value),
      push_all: pushAll.checked,
      push_channels: list(pushChannels.value),
    });
    toast("Preferences saved.");
  });
  const push = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        try {
          status.textContent = await enablePush();
        } catch (err) {
          status.textContent = `Could not turn push on: ${(err as Error).message}`;
        }
      },
    },
    "Turn on push notifications",
  );
  main.append(
    h("h1", {}, "Settings"),
    form,
    h("section", { class: "card" }, h("h2", {}, "Web Push"), h("p", {}, "Get a system notification when a followed channel goes live, even with this tab closed."), push, status),
  );
}
