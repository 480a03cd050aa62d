// The demo of a regular model: one JSON field per input, pre-filled with a valid example.
// "Predict" posts {"inputs": {...}} to the predict route and shows each output; class
// probabilities (rows of a [batch, k] output that sum to 1) are drawn as bars.

const model = CONFIG.model;
const fields = {};
document.getElementById("endpoint").textContent = "POST " + CONFIG.predict;

function exampleText(name) {
  const example = CONFIG.example && CONFIG.example[name];
  return example === undefined ? "" : JSON.stringify(example);
}

function specText(spec) {
  return `${spec.datatype} [${spec.shape.join(", ")}]`;
}

for (const spec of model.inputs) {
  const area = el("textarea", {id: "input-" + spec.name, rows: 3, spellcheck: "false"});
  area.value = exampleText(spec.name);
  fields[spec.name] = area;
  document.getElementById("inputs").append(el("div", {class: "field"},
    el("label", {for: area.id}, spec.name, el("code", {}, specText(spec))),
    area));
}
if (model.inputs.some((spec) => spec.shape.includes(-1))) {
  document.getElementById("inputs").append(
    el("p", {class: "muted"}, "-1 in a shape is a dynamic dimension: any size."));
}

document.getElementById("reset").addEventListener("click", () => {
  for (const [name, area] of Object.entries(fields)) area.value = exampleText(name);
});

document.getElementById("predict-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const inputs = {};
  for (const [name, area] of Object.entries(fields)) {
    try {
      inputs[name] = JSON.parse(area.value);
    } catch (err) {
      showError(`input "${name}" is not valid JSON: ${err.message}`);
      return;
    }
  }
  const button = document.getElementById("run");
  button.disabled = true;
  setStatus("running…");
  const started = performance.now();
  try {
    const res = await fetch(CONFIG.predict, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({inputs}),
    });
    if (!res.ok) {
      document.getElementById("result").hidden = true;
      showError(await errorText(res));
      setStatus("failed");
      return;
    }
    render((await res.json()).outputs);
    setStatus(`done in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    showError("the request failed: " + err.message);
    setStatus("failed");
  } finally {
    button.disabled = false;
  }
});

function render(outputs) {
  const box = document.getElementById("outputs");
  box.replaceChildren();
  for (const spec of model.outputs) {
    const value = outputs[spec.name];
    const card = el("div", {class: "output", id: "output-" + spec.name},
      el("h3", {}, spec.name, " ", el("code", {class: "muted"}, specText(spec))));
    if (spec.name === CONFIG.classifier && isDistribution(value)) {
      value.forEach((row, index) => card.append(bars(row, index, value.length > 1)));
    }
    card.append(el("pre", {}, compact(value)));
    box.append(card);
  }
  document.getElementById("result").hidden = false;
}

/** Rows of probabilities: each row in [0, 1] and summing to about 1. */
function isDistribution(value) {
  return Array.isArray(value) && value.length > 0 && value.every((row) =>
    Array.isArray(row) && row.length > 1 &&
    row.every((p) => typeof p === "number" && p >= 0 && p <= 1) &&
    Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 0.01);
}

function bars(row, index, numbered) {
  const top = row.indexOf(Math.max(...row));
  return el("div", {class: "bars", "data-row": index, "data-top": top},
    numbered ? el("div", {class: "muted"}, `row ${index}`) : null,
    row.map((p, k) => el("div", {class: k === top ? "bar top" : "bar"},
      el("span", {class: "name"}, `class ${k}`),
      el("div", {class: "track"}, el("div", {class: "fill", style: `width: ${(p * 100).toFixed(1)}%`})),
      el("span", {class: "value"}, `${(p * 100).toFixed(1)}%`))));
}

function compact(value) {
  const text = JSON.stringify(value);
  return text.length > 4000 ? `${text.slice(0, 4000)}… (${text.length} characters)` : text;
}
