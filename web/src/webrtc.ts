// WHIP/WHEP signalling (RFC 9725 style): one offer with every candidate gathered (no trickle), the SDP
// answer in the body and the session's URL in Location (DELETE it to stop).
import { ApiError } from "./api";

function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 2000);
  });
}

export async function offerAndAnswer(
  pc: RTCPeerConnection,
  url: string,
  headers: Record<string, string>,
): Promise<{ location: string }> {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", ...headers },
    body: pc.localDescription!.sdp,
  });
  if (r.status !== 201) {
    let detail = `${r.status}`;
    let code = "error";
    try {
      const body = await r.json();
      detail = body.detail ?? detail;
      code = body.code ?? code;
    } catch {
      /* keep the status */
    }
    pc.close();
    throw new ApiError(r.status, code, detail);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  return { location: r.headers.get("Location") ?? "" };
}

/** Broadcast `stream` to the channel with the stream key; returns the session URL to DELETE. */
export async function whip(channel: string, key: string, stream: MediaStream): Promise<{ pc: RTCPeerConnection; location: string }> {
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const { location } = await offerAndAnswer(pc, `/api/v1/channels/${encodeURIComponent(channel)}/whip`, {
    Authorization: `Bearer ${key}`,
  });
  return { pc, location };
}
