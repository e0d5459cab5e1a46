// The type checker's view of dist/vendor/uplot.js, which `waystation build` copies from npm's uplot.
import uPlot from "uplot";
export default uPlot;
