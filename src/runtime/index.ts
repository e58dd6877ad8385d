/** The embedded PC: the boot test and the machine it runs on. */
export { type BootResult, type BootTestOptions, type BootVerdict, bootTest } from "./boot.js";
export { CowOverlay } from "./disk-overlay.js";
export { Machine, type MachineOptions, type MachineStop, type RunLimits } from "./machine.js";
