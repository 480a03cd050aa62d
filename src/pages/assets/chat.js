// The demo of a byte-level language model: a chat whose answer streams token by token over
// Server-Sent Events from /v1/chat/completions, read with fetch and a ReadableStream.

const messages = [];
let controller = null;
document.getElementById("endpoint").textContent = "POST " + CONFIG.chat;

/** Adds a message to the conversation and returns the element holding its text. */
function bubble(role, text) {
  const body = el("span", {class: "text"}, text);
  document.getElementById("messages").append(
    el("div", {class: "msg " + role}, el("span", {class: "role"}, role), body));
  return body;
}

/** Yields the data of each Server-Sent Event in a response body, as it arrives. */
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  for (;;) {
    const {value, done} = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), {stream: !done});
    const lines = buffer.split("\n");
    buffer = done ? "" : lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (data.length) yield data.join("\n");
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      } // ":" comments (keep-alives) and other fields are ignored.
    }
    if (done) {
      if (data.length) yield data.join("\n");
      return;
    }
  }
}

async function send(content) {
  messages.push({role: "user", content});
  bubble("user", content);
  const answer = bubble("assistant", "");
  const box = answer.parentElement;
  box.dataset.state = "streaming";
  let pieces = 0;
  let finish = "";
  controller = new AbortController();
  try {
    const res = await fetch(CONFIG.chat, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      signal: controller.signal,
      body: JSON.stringify({
        model: CONFIG.model.name,
        messages,
        stream: true,
        max_tokens: Number(document.getElementById("max-tokens").value),
        temperature: Number(document.getElementById("temperature").value),
      }),
    });
    if (!res.ok) throw new Error(await errorText(res));
    for await (const data of events(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
      const choice = (chunk.choices || [])[0] || {};
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        answer.textContent += piece;
        pieces += 1;
        box.dataset.pieces = pieces;
        setStatus(`streaming… ${pieces} pieces`);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    box.dataset.state = "done";
    setStatus(`done (${finish || "end of stream"}, ${pieces} pieces)`);
  } catch (err) {
    box.dataset.state = err.name === "AbortError" ? "stopped" : "failed";
    if (err.name === "AbortError") setStatus("stopped");
    else {
      showError(err.message);
      setStatus("failed");
    }
  } finally {
    // A turn without an answer is dropped from the history sent next time.
    if (answer.textContent) messages.push({role: "assistant", content: answer.textContent});
    else messages.pop();
    controller = null;
  }
}

document.getElementById("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("message");
  const content = input.value.trim();
  if (!content || controller) return;
  showError("");
  input.value = "";
  const [sendButton, stopButton] = [document.getElementById("send"), document.getElementById("stop")];
  sendButton.disabled = true;
  stopButton.disabled = false;
  await send(content);
  sendButton.disabled = false;
  stopButton.disabled = true;
});

document.getElementById("stop").addEventListener("click", () => controller && controller.abort());
document.getElementById("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    document.getElementById("chat-form").requestSubmit();
  }
});
