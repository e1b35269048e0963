// The progress line on stderr: redrawn in place every second on a terminal; one
// timestamped line per step otherwise (a log file stays readable).
export class Progress {
  private readonly t0 = Date.now();
  private prefix = "";
  private text = "";
  private since = Date.now();
  private timer?: NodeJS.Timeout;
  private readonly tty = Boolean(process.stderr.isTTY);

  start() {
    if (this.tty) this.timer = setInterval(() => this.draw(), 1000);
  }

  phase(prefix: string) {
    this.prefix = prefix;
  }

  step(text: string) {
    this.text = text;
    this.since = Date.now();
    if (this.tty) this.draw();
    else process.stderr.write(`[${clock(Date.now() - this.t0)}] ${this.prefix} ${text}\n`);
  }

  /** A line that stays (a note, a finished figure). */
  log(line: string) {
    if (this.tty) process.stderr.write("\r\x1b[K");
    process.stderr.write(line + "\n");
    if (this.tty) this.draw();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    if (this.tty) process.stderr.write("\r\x1b[K");
  }

  private draw() {
    const line = `[${clock(Date.now() - this.t0)}] ${this.prefix} ${this.text} (${Math.round((Date.now() - this.since) / 1000)} s)`;
    const width = process.stderr.columns || 120;
    process.stderr.write("\r\x1b[K" + line.slice(0, width - 1));
  }
}

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
