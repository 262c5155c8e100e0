// The panel's link to its kernel: a ping every few seconds, answered by the kernel (`Link` in panel.py). When
// pings go unanswered (the kernel was restarted or stopped, or the page lost its messages to it), a line says so
// and what to do, instead of a panel that silently drops every input.
const EVERY = 4000; // ms between two pings
const MISSED = 2; // unanswered pings before the line shows

function render({ model, el }) {
  el.classList.add("cllm-link");
  const line = document.createElement("div");
  line.className = "cllm-link-lost";
  line.textContent = model.get("lost_text");
  line.style.display = "none";
  el.appendChild(line);
  let sent = 0;
  let answered = 0;
  model.on("msg:custom", (msg) => {
    if (msg && typeof msg.pong === "number") {
      answered = Math.max(answered, msg.pong);
      line.style.display = "none";
    }
  });
  const ping = () => {
    if (sent - answered >= MISSED) {
      line.style.display = "";
    }
    sent += 1;
    try {
      model.send({ ping: sent });
    } catch (e) {
      line.style.display = "";
    }
  };
  ping();
  const timer = setInterval(ping, EVERY);
  return () => clearInterval(timer);
}

export default { render };
