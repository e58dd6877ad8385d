import type { IoBus, MemoryBus, PortHandler } from "../bus.js";

/**
 * VGA in 80×25 colour text mode, kept as text for diagnosis: the screen is
 * plain RAM at 0xB8000 (character, attribute pairs) and this device only
 * answers the register ports guests touch — the CRT controller (index
 * 0x3D4, data 0x3D5; the cursor location is registers 0x0E/0x0F), the
 * miscellaneous output register (0x3CC read, 0x3C2 write) and input status 1
 * (0x3DA, whose retrace bits toggle so polling loops end). No graphics.
 */

export const VGA_TEXT_BASE = 0xb8000;
export const VGA_COLUMNS = 80;
export const VGA_ROWS = 25;

const CRTC_INDEX = 0x3d4;
const CRTC_DATA = 0x3d5;
const MISC_OUTPUT_READ = 0x3cc;
const MISC_OUTPUT_WRITE = 0x3c2;
const INPUT_STATUS_1 = 0x3da;
const CRTC_CURSOR_HIGH = 0x0e;
const CRTC_CURSOR_LOW = 0x0f;

export class VgaText implements PortHandler {
  private crtcIndex = 0;
  private readonly crtc = new Uint8Array(256);
  private misc = 0x67; // colour emulation (I/O at 0x3Dx), 28 MHz clock
  private retrace = 0;
  /** Other VGA registers (sequencer, graphics, attribute, DAC) are stored and read back. */
  private readonly other = new Map<number, number>();

  constructor(private readonly memory: MemoryBus) {
    this.crtc[0x0a] = 0x0d; // cursor start scan line
    this.crtc[0x0b] = 0x0e; // cursor end scan line
  }

  register(io: IoBus): void {
    io.register(0x3c0, 0x20, this);
  }

  read(port: number): number {
    switch (port) {
      case CRTC_INDEX:
        return this.crtcIndex;
      case CRTC_DATA:
        return this.crtc[this.crtcIndex]!;
      case MISC_OUTPUT_READ:
        return this.misc;
      case INPUT_STATUS_1:
        // Alternate display-enable (bit 0) and vertical retrace (bit 3) on every read.
        this.retrace ^= 0x09;
        return this.retrace;
      default:
        return this.other.get(port) ?? 0;
    }
  }

  write(port: number, size: 1 | 2 | 4, value: number): void {
    if (size === 2 && port === CRTC_INDEX) {
      // `out dx, ax` to the index port writes index then data.
      this.crtcIndex = value & 0xff;
      this.crtc[this.crtcIndex] = (value >> 8) & 0xff;
      return;
    }
    switch (port) {
      case CRTC_INDEX:
        this.crtcIndex = value & 0xff;
        return;
      case CRTC_DATA:
        this.crtc[this.crtcIndex] = value & 0xff;
        return;
      case MISC_OUTPUT_WRITE:
        this.misc = value & 0xff;
        return;
      default:
        this.other.set(port, value & 0xff);
    }
  }

  /** Cursor position (row, column) from the CRT controller. */
  cursor(): { row: number; column: number } {
    const offset = (this.crtc[CRTC_CURSOR_HIGH]! << 8) | this.crtc[CRTC_CURSOR_LOW]!;
    return { row: Math.floor(offset / VGA_COLUMNS), column: offset % VGA_COLUMNS };
  }

  setCursor(row: number, column: number): void {
    const offset = row * VGA_COLUMNS + column;
    this.crtc[CRTC_CURSOR_HIGH] = offset >> 8;
    this.crtc[CRTC_CURSOR_LOW] = offset & 0xff;
  }

  /** The screen as text: 25 lines, trailing blanks trimmed, trailing empty lines dropped. */
  textDump(): string {
    return screenText(this.memory);
  }
}

/** Reads the 80×25 text screen out of RAM. */
export function screenText(memory: MemoryBus): string {
  const lines: string[] = [];
  for (let row = 0; row < VGA_ROWS; row++) {
    let line = "";
    for (let column = 0; column < VGA_COLUMNS; column++) {
      const code = memory.read8(VGA_TEXT_BASE + 2 * (row * VGA_COLUMNS + column));
      line += code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : code === 0 ? " " : ".";
    }
    lines.push(line.trimEnd());
  }
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines.join("\n");
}
