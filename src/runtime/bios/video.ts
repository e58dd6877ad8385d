import { Reg, Seg } from "../cpu/api.js";
import { VGA_COLUMNS, VGA_ROWS, VGA_TEXT_BASE } from "../devices/vga.js";
import { AH, AL, BH, type BiosCall, type BiosMachine, BL, CH, CL, DH, DL } from "./context.js";
import { BDA_CURSOR_POS, BDA_CURSOR_SHAPE, BDA_VIDEO_MODE, BDA_VIDEO_PAGE } from "./layout.js";

/**
 * int 10h in 80×25 colour text mode (IBM VGA BIOS; the calls GRUB's
 * console driver makes: 0Eh teletype, 09h/0Ah write character, 02h/03h
 * cursor, 01h cursor shape, 0Fh mode, plus 00h, 05h, 06h/07h scroll, 08h,
 * 12h, 1Ah). Page 0 only. VBE (4Fxxh) answers "failed", so loaders stay in
 * text mode. Everything printed also goes to the screen transcript.
 */

const DEFAULT_ATTRIBUTE = 0x07;
const TEXT_MODE = 0x03;
const VBE_FAILED = 0x014f; // AL = 4Fh (function known), AH = 01h (failed)

export class VideoServices {
  constructor(private readonly machine: BiosMachine) {}

  /** Power-on state: mode 3, blank screen, cursor at the top left. */
  reset(): void {
    const memory = this.machine.memory;
    memory.write8(BDA_VIDEO_MODE, TEXT_MODE);
    memory.write16(BDA_CURSOR_SHAPE, 0x0607);
    memory.write8(BDA_VIDEO_PAGE, 0);
    this.clear();
  }

  private clear(): void {
    for (let i = 0; i < VGA_COLUMNS * VGA_ROWS; i++) {
      this.machine.memory.write16(VGA_TEXT_BASE + 2 * i, (DEFAULT_ATTRIBUTE << 8) | 0x20);
    }
    this.setCursor(0, 0);
  }

  private cursor(): { row: number; column: number } {
    const pos = this.machine.memory.read16(BDA_CURSOR_POS);
    return { row: pos >> 8, column: pos & 0xff };
  }

  private setCursor(row: number, column: number): void {
    this.machine.memory.write16(BDA_CURSOR_POS, (row << 8) | column);
    this.machine.vga.setCursor(row, column);
  }

  private cellAddress(row: number, column: number): number {
    return VGA_TEXT_BASE + 2 * (row * VGA_COLUMNS + column);
  }

  /** Scrolls rows [top, bottom] × columns [left, right] up (or down) by `lines` (0 = clear). */
  private scroll(
    up: boolean,
    lines: number,
    attr: number,
    top: number,
    left: number,
    bottom: number,
    right: number,
  ): void {
    const memory = this.machine.memory;
    bottom = Math.min(bottom, VGA_ROWS - 1);
    right = Math.min(right, VGA_COLUMNS - 1);
    if (top > bottom || left > right) return;
    const height = bottom - top + 1;
    if (lines === 0 || lines > height) lines = height;
    const blank = (attr << 8) | 0x20;
    for (let i = 0; i < height; i++) {
      const row = up ? top + i : bottom - i;
      const source = up ? row + lines : row - lines;
      for (let column = left; column <= right; column++) {
        const inside = up ? source <= bottom : source >= top;
        memory.write16(
          this.cellAddress(row, column),
          inside ? memory.read16(this.cellAddress(source, column)) : blank,
        );
      }
    }
  }

  /** Teletype output of one character (also used by the BIOS itself). */
  teletype(byte: number, attr = DEFAULT_ATTRIBUTE): void {
    this.machine.screenOutput(byte);
    let { row, column } = this.cursor();
    switch (byte) {
      case 0x0d:
        column = 0;
        break;
      case 0x0a:
        row++;
        break;
      case 0x08:
        if (column > 0) column--;
        break;
      case 0x07:
        break; // bell
      default: {
        const at = this.cellAddress(row, column);
        this.machine.memory.write8(at, byte);
        this.machine.memory.write8(at + 1, attr);
        column++;
        if (column >= VGA_COLUMNS) {
          column = 0;
          row++;
        }
      }
    }
    if (row >= VGA_ROWS) {
      this.scroll(true, 1, DEFAULT_ATTRIBUTE, 0, 0, VGA_ROWS - 1, VGA_COLUMNS - 1);
      row = VGA_ROWS - 1;
    }
    this.setCursor(row, column);
  }

  handle(call: BiosCall): void {
    const memory = this.machine.memory;
    switch (call.ah) {
      case 0x00: // set mode: every text mode is 80×25 here
        memory.write8(BDA_VIDEO_MODE, call.al & 0x7f);
        if (!(call.al & 0x80)) this.clear();
        call.set8(AL, 0x30);
        return;
      case 0x01:
        memory.write16(BDA_CURSOR_SHAPE, call.cx);
        return;
      case 0x02:
        this.setCursor(Math.min(call.reg8(DH), VGA_ROWS - 1), Math.min(call.reg8(DL), VGA_COLUMNS - 1));
        return;
      case 0x03: {
        const { row, column } = this.cursor();
        call.set16(Reg.CX, memory.read16(BDA_CURSOR_SHAPE));
        call.set16(Reg.DX, (row << 8) | column);
        return;
      }
      case 0x05: // select page: only page 0 exists
        return;
      case 0x06:
      case 0x07:
        this.scroll(
          call.ah === 0x06,
          call.al,
          call.reg8(BH),
          call.reg8(CH),
          call.reg8(CL),
          call.reg8(DH),
          call.reg8(DL),
        );
        return;
      case 0x08: {
        const { row, column } = this.cursor();
        call.set16(Reg.AX, memory.read16(this.cellAddress(row, column)));
        return;
      }
      case 0x09:
      case 0x0a: {
        // Write character (and attribute for 09h) CX times at the cursor; the cursor stays.
        const { row, column } = this.cursor();
        const start = row * VGA_COLUMNS + column;
        const end = Math.min(VGA_COLUMNS * VGA_ROWS, start + call.cx);
        for (let cell = start; cell < end; cell++) {
          memory.write8(VGA_TEXT_BASE + 2 * cell, call.al);
          if (call.ah === 0x09) memory.write8(VGA_TEXT_BASE + 2 * cell + 1, call.reg8(BL));
        }
        if (call.al >= 0x20 && call.cx > 0) this.machine.screenOutput(call.al);
        return;
      }
      case 0x0e:
        this.teletype(call.al);
        return;
      case 0x0f:
        call.set8(AL, memory.read8(BDA_VIDEO_MODE));
        call.set8(AH, VGA_COLUMNS);
        call.set8(BH, 0);
        return;
      case 0x10: // palette: accepted, nothing to show
      case 0x11: // character generator
        return;
      case 0x12:
        if (call.reg8(BL) === 0x10) {
          call.set8(BH, 0); // colour
          call.set8(BL, 3); // 256 KiB
          call.set16(Reg.CX, 0x0009);
        }
        return;
      case 0x13: {
        // Write string: ES:BP, CX characters, at DH:DL.
        const bp = call.cpu.getReg16(Reg.BP);
        const base = call.address(Seg.ES, bp);
        const withAttributes = (call.al & 2) !== 0;
        this.setCursor(call.reg8(DH), call.reg8(DL));
        for (let i = 0; i < call.cx; i++) {
          const at = base + (withAttributes ? 2 * i : i);
          this.teletype(memory.read8(at), withAttributes ? memory.read8(at + 1) : call.reg8(BL));
        }
        return;
      }
      case 0x1a:
        if (call.al === 0) {
          call.set8(AL, 0x1a);
          call.set8(BL, 0x08); // VGA with colour display
          call.set8(BH, 0);
        }
        return;
      case 0x4f:
        call.set16(Reg.AX, VBE_FAILED);
        return;
      default:
        return; // unknown video calls change nothing (AL/AH kept, as many BIOSes do)
    }
  }
}
