// Small live line charts for the /call page (RTT, bitrate), drawn as SVG polylines so the page
// needs no chart library and no inline style (the CSP allows none).

const WIDTH = 240;
const HEIGHT = 60;

/** A chart of up to `points` samples per series, scaled to the largest value shown. */
export class Sparkline {
  /**
   * @param {SVGSVGElement} svg
   * @param {string[]} series class names, one polyline each ("a", "b")
   * @param {number} points samples kept per series
   */
  constructor(svg, series, points = 60) {
    this.svg = svg;
    this.points = points;
    this.data = series.map(() => []);
    this.lines = series.map((cls) => {
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("class", cls);
      svg.appendChild(line);
      return line;
    });
  }

  /** Appends one sample per series (null: no value this time) and redraws. */
  push(...values) {
    values.forEach((v, i) => {
      const d = this.data[i];
      d.push(typeof v === "number" && Number.isFinite(v) ? v : null);
      if (d.length > this.points) d.shift();
    });
    this.draw();
  }

  draw() {
    const max = Math.max(1, ...this.data.flat().filter((v) => v !== null));
    const step = WIDTH / Math.max(1, this.points - 1);
    this.data.forEach((d, i) => {
      const pts = [];
      d.forEach((v, j) => {
        if (v !== null) pts.push(`${(j * step).toFixed(1)},${(HEIGHT - (v / max) * (HEIGHT - 4) - 2).toFixed(1)}`);
      });
      this.lines[i].setAttribute("points", pts.join(" "));
    });
    this.svg.dataset.samples = String(Math.max(...this.data.map((d) => d.length)));
    this.svg.dataset.max = String(max);
  }

  clear() {
    this.data = this.data.map(() => []);
    this.draw();
  }
}
