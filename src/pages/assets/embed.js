// The demo of an embedding model: one vector per line of text from /v1/embeddings, compared
// two by two by cosine similarity (the vectors come back normalized when the model says so,
// so the page divides by their norms itself).

document.getElementById("endpoint").textContent = "POST " + CONFIG.embeddings;

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function show(texts, vectors) {
  const label = (i) => `#${i + 1}`;
  const table = document.getElementById("similarity");
  table.replaceChildren(el("tr", {}, el("th", {}, ""), texts.map((_, i) => el("th", {}, label(i)))));
  vectors.forEach((a, i) => table.append(el("tr", {}, el("th", {title: texts[i]}, label(i)),
    vectors.map((b) => el("td", {}, cosine(a, b).toFixed(3))))));
  document.getElementById("vectors").replaceChildren(...vectors.map((v, i) => el("div", {class: "output"},
    el("h3", {}, `${label(i)} ${texts[i]}`),
    el("div", {class: "sig"}, `${v.length} values: [${v.slice(0, 6).map((x) => x.toFixed(4)).join(", ")}, …]`))));
  document.getElementById("result").hidden = false;
}

document.getElementById("embed-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const texts = document.getElementById("texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (!texts.length) return;
  showError("");
  setStatus("embedding…");
  try {
    const res = await fetch(CONFIG.embeddings, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({model: CONFIG.model.name, input: texts}),
    });
    if (!res.ok) throw new Error(await errorText(res));
    const answer = await res.json();
    show(texts, answer.data.map((row) => row.embedding));
    setStatus(`done (${answer.usage ? answer.usage.prompt_tokens : "?"} tokens)`);
  } catch (err) {
    showError(err.message);
    setStatus("failed");
  }
});
