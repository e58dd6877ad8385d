/**
 * Where the built-in BIOS puts things in the first megabyte (the PC/AT
 * conventions every boot loader expects; offsets of the BIOS data area as
 * in Ralf Brown's Interrupt List "MEMORY.LST" and SeaBIOS's src/std/bda.h).
 */

/** Interrupt vector table: 256 far pointers at 0000:0000. */
export const IVT_BASE = 0x0000;
/** BIOS data area at 0040:0000. */
export const BDA_BASE = 0x0400;
export const BDA_COM_PORTS = 0x400; // 4 words: COM1-COM4 base ports
export const BDA_LPT_PORTS = 0x408; // 3 words
export const BDA_EBDA_SEGMENT = 0x40e;
export const BDA_EQUIPMENT = 0x410;
export const BDA_MEMORY_KIB = 0x413;
export const BDA_KBD_FLAGS = 0x417;
export const BDA_KBD_HEAD = 0x41a;
export const BDA_KBD_TAIL = 0x41c;
export const BDA_KBD_BUFFER = 0x41e;
export const BDA_VIDEO_MODE = 0x449;
export const BDA_VIDEO_COLUMNS = 0x44a;
export const BDA_VIDEO_PAGE_SIZE = 0x44c;
export const BDA_VIDEO_PAGE_OFFSET = 0x44e;
export const BDA_CURSOR_POS = 0x450; // 8 words: (row << 8) | column per page
export const BDA_CURSOR_SHAPE = 0x460;
export const BDA_VIDEO_PAGE = 0x462;
export const BDA_CRTC_BASE = 0x463;
export const BDA_TICKS = 0x46c; // dword: timer ticks since midnight
export const BDA_MIDNIGHT = 0x470;
export const BDA_DISK_STATUS = 0x474;
export const BDA_HARD_DISKS = 0x475;
export const BDA_KBD_BUFFER_START = 0x480;
export const BDA_KBD_BUFFER_END = 0x482;
export const BDA_VIDEO_ROWS = 0x484; // rows - 1
export const BDA_CHAR_HEIGHT = 0x485;

/** Extended BIOS data area: the top KiB of conventional memory. */
export const EBDA_SEGMENT = 0x9fc0;
export const EBDA_BASE = EBDA_SEGMENT << 4;
export const EBDA_KIB = 1;
/** Conventional memory reported by int 12h (KiB below the EBDA). */
export const CONVENTIONAL_KIB = EBDA_BASE / 1024;

/** The BIOS "ROM": the F segment (RAM here, written at reset). */
export const ROM_SEGMENT = 0xf000;
export const ROM_BASE = 0xf0000;
export const ROM_SIZE = 0x10000;
/** Interrupt service stubs: 8 bytes per vector at F000:1000 + vector*8. */
export const STUB_OFFSET = 0x1000;
export const STUB_SIZE = 8;
/** The POST entry the reset vector jumps to (the traditional F000:E05B). */
export const POST_OFFSET = 0xe05b;
/** int 15h AH=C0h system configuration table (traditional F000:E6F5). */
export const CONFIG_TABLE_OFFSET = 0xe6f5;
/** A lone IRET for vectors nothing handles (traditional F000:FF53). */
export const DUMMY_IRET_OFFSET = 0xff53;
export const RESET_VECTOR_OFFSET = 0xfff0;
export const BIOS_DATE_OFFSET = 0xfff5;
export const MODEL_BYTE_OFFSET = 0xfffe;

/** Where the boot sector is loaded and entered. */
export const BOOT_SECTOR_ADDRESS = 0x7c00;
export const BOOT_DRIVE = 0x80;

/** The hypercall opcode the CPU traps to `CpuHost.hypercall`: 0F 3F ib. */
export const HYPERCALL = [0x0f, 0x3f] as const;
/** Hypercall numbers that are not interrupt vectors. */
export const HC_POST = 0xf0;

/** One timer tick of the BIOS clock: 65536 PIT cycles (≈ 54.9 ms, 18.2 Hz). */
export const TICK_NS = (65536 * 1e9) / 1_193_182;
/** Ticks in a day (the BIOS wraps at midnight). */
export const TICKS_PER_DAY = 0x1800b0;

/** Real-mode segment:offset → linear address. */
export function linear(segment: number, offset: number): number {
  return ((segment & 0xffff) << 4) + (offset & 0xffff);
}
