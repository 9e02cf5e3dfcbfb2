// The channel player: WebRTC over WHEP by default (sub-second latency); DASH through Shaka Player as the
// fallback or on request, with a quality selector. A stats line shows decoded frames and latency mode.
import { enc } from "./api";
import { h } from "./dom";
import { offerAndAnswer } from "./webrtc";

interface ShakaTrack {
  id: number;
  height: number | null;
  bandwidth: number;
  active: boolean;
}
interface ShakaPlayer {
  attach(video: HTMLVideoElement): Promise<void>;
  load(url: string): Promise<void>;
  destroy(): Promise<void>;
  configure(config: object): void;
  getVariantTracks(): ShakaTrack[];
  selectVariantTrack(track: ShakaTrack, clearBuffer: boolean): void;
  addEventListener(type: string, fn: () => void): void;
}

export type Mode = "webrtc" | "dash";

export class Player {
  readonly el: HTMLElement;
  readonly video: HTMLVideoElement;
  private readonly status: HTMLElement;
  private readonly stats: HTMLElement;
  private readonly quality: HTMLSelectElement;
  private readonly modeButton: HTMLButtonElement;
  private pc: RTCPeerConnection | null = null;
  private whepLocation: string | null = null;
  private shaka: ShakaPlayer | null = null;
  private timer: ReturnType<typeof setInterval> | undefined;
  mode: Mode = "webrtc";

  constructor(private readonly channel: string) {
    this.video = h("video", { autoplay: true, muted: true, playsinline: true, controls: true, "aria-label": `${channel} live video` });
    this.video.muted = true;
    this.status = h("p", { class: "player-status", role: "status" });
    this.stats = h("p", { class: "player-stats", "data-testid": "player-stats" });
    this.quality = h("select", { "aria-label": "Quality", hidden: true });
    this.modeButton = h("button", { type: "button", class: "small" }, "Switch to DASH");
    this.modeButton.addEventListener("click", () => void this.play(this.mode === "webrtc" ? "dash" : "webrtc"));
    this.quality.addEventListener("change", () => this.pickQuality());
    this.el = h(
      "div",
      { class: "player" },
      this.video,
      h("div", { class: "player-bar" }, this.status, this.quality, this.modeButton, this.stats),
    );
    this.timer = setInterval(() => void this.updateStats(), 1000);
  }

  async play(mode: Mode): Promise<void> {
    await this.stopMedia();
    this.mode = mode;
    this.modeButton.textContent = mode === "webrtc" ? "Switch to DASH" : "Switch to low latency";
    this.modeButton.hidden = false;
    this.quality.hidden = true;
    try {
      if (mode === "webrtc") await this.playWebRtc();
      else await this.playDash();
    } catch (err) {
      if (mode === "webrtc") {
        this.status.textContent = `Low-latency playback failed (${(err as Error).message}); trying DASH.`;
        await this.play("dash");
      } else {
        this.status.textContent = `Playback failed: ${(err as Error).message}`;
      }
    }
  }

  private async playWebRtc(): Promise<void> {
    this.status.textContent = "Connecting…";
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (event) => {
      stream.addTrack(event.track);
      this.video.srcObject = stream;
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.status.textContent = "Live · low latency";
      if (pc.connectionState === "failed") this.status.textContent = "Connection lost.";
    };
    const { location } = await offerAndAnswer(pc, `/api/v1/channels/${enc(this.channel)}/whep`, {});
    this.whepLocation = location;
  }

  /** Play a finished broadcast (a static DASH manifest) in this player. */
  async playRecording(manifestUrl: string): Promise<void> {
    await this.stopMedia();
    this.mode = "dash";
    this.modeButton.hidden = true;
    try {
      await this.playDash(manifestUrl, false);
      this.status.textContent = "Recording · DASH";
    } catch (err) {
      this.status.textContent = `Playback failed: ${(err as Error).message}`;
    }
  }

  /** Live: the low-latency manifest (segments stream while they are made), else the plain one. */
  private async playDash(url?: string, live = true): Promise<void> {
    this.status.textContent = "Loading…";
    const mod = (await import("shaka-player/dist/shaka-player.dash-es2021.js")) as unknown as {
      default: { Player: new () => ShakaPlayer; polyfill: { installAll(): void } };
    };
    const shaka = mod.default;
    shaka.polyfill.installAll();
    const player = new shaka.Player();
    this.shaka = player;
    await player.attach(this.video);
    player.configure({ streaming: { lowLatencyMode: live } });
    player.addEventListener("variantchanged", () => this.fillQualities());
    player.addEventListener("adaptation", () => this.fillQualities());
    const base = `/live/${enc(this.channel)}`;
    const urls = url ? [url] : [`${base}/manifest-ll.mpd`, `${base}/manifest.mpd`];
    for (const [i, candidate] of urls.entries()) {
      try {
        await player.load(candidate);
        break;
      } catch (err) {
        if (i === urls.length - 1) throw err;
      }
    }
    this.fillQualities();
    this.status.textContent = "Live · DASH";
  }

  private fillQualities(): void {
    if (!this.shaka) return;
    const tracks = this.shaka.getVariantTracks().sort((a, b) => (b.height ?? 0) - (a.height ?? 0));
    const current = this.quality.value;
    this.quality.replaceChildren(h("option", { value: "auto" }, "Auto"));
    for (const t of tracks) {
      this.quality.append(h("option", { value: String(t.id) }, t.height ? `${t.height}p` : `${Math.round(t.bandwidth / 1000)} kbit/s`));
    }
    this.quality.value = current || "auto";
    this.quality.hidden = tracks.length < 2;
  }

  private pickQuality(): void {
    if (!this.shaka) return;
    const value = this.quality.value;
    this.shaka.configure({ abr: { enabled: value === "auto" } });
    const track = this.shaka.getVariantTracks().find((t) => String(t.id) === value);
    if (track) this.shaka.selectVariantTrack(track, true);
  }

  private async updateStats(): Promise<void> {
    let decoded = 0;
    if (this.pc) {
      const report = await this.pc.getStats();
      report.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") decoded = r.framesDecoded ?? 0;
      });
    } else if (this.video.getVideoPlaybackQuality) {
      decoded = this.video.getVideoPlaybackQuality().totalVideoFrames;
    }
    this.stats.dataset.framesDecoded = String(decoded);
    this.stats.textContent = `${this.mode === "webrtc" ? "WebRTC" : "DASH"} · ${decoded} frames`;
  }

  showOffline(): void {
    void this.stopMedia();
    this.status.textContent = "Offline";
  }

  private async stopMedia(): Promise<void> {
    if (this.whepLocation) {
      void fetch(this.whepLocation, { method: "DELETE" }).catch(() => undefined);
      this.whepLocation = null;
    }
    this.pc?.close();
    this.pc = null;
    if (this.shaka) await this.shaka.destroy();
    this.shaka = null;
    this.video.srcObject = null;
  }

  destroy(): void {
    clearInterval(this.timer);
    void this.stopMedia();
  }
}
