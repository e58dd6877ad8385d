import type { IoBus, IrqLine, PortHandler } from "../bus.js";

/**
 * The i8042 keyboard controller (IBM PC/AT Technical Reference; the command
 * set qemu's hw/input/pckbd.c implements): data port 0x60, status/command
 * port 0x64. What guests need from it here: the self-test (0xAA → 0x55),
 * the command byte, the output port (bit 1 = A20 gate, bit 0 = 0 resets the
 * CPU), pulse-reset 0xFE, and a keyboard that acknowledges its commands so
 * that Linux's i8042/atkbd probes finish at once instead of timing out.
 * No key is ever pressed.
 */

const STATUS_OBF = 0x01; // output buffer full
const STATUS_SYS = 0x04; // system flag (self-test passed)
const STATUS_CMD = 0x08; // last write was to the command port
const STATUS_AUX_OBF = 0x20; // output buffer holds mouse data

const CMD_READ_COMMAND_BYTE = 0x20;
const CMD_WRITE_COMMAND_BYTE = 0x60;
const CMD_DISABLE_AUX = 0xa7;
const CMD_ENABLE_AUX = 0xa8;
const CMD_TEST_AUX = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_TEST_KBD = 0xab;
const CMD_DISABLE_KBD = 0xad;
const CMD_ENABLE_KBD = 0xae;
const CMD_READ_INPUT_PORT = 0xc0;
const CMD_READ_OUTPUT_PORT = 0xd0;
const CMD_WRITE_OUTPUT_PORT = 0xd1;
const CMD_WRITE_KBD_OUTPUT = 0xd2;
const CMD_WRITE_AUX_OUTPUT = 0xd3;
const CMD_WRITE_AUX = 0xd4;
const CMD_DISABLE_A20 = 0xdd;
const CMD_ENABLE_A20 = 0xdf;
const CMD_PULSE_RESET = 0xfe;

const COMMAND_BYTE_KBD_INT = 0x01;
const COMMAND_BYTE_AUX_INT = 0x02;

const OUTPUT_PORT_RESET = 0x01; // 0 = hold the CPU in reset
const OUTPUT_PORT_A20 = 0x02;

// Keyboard (device) commands and answers.
const KBD_ACK = 0xfa;
const KBD_RESET = 0xff;
const KBD_GET_ID = 0xf2;
const KBD_ECHO = 0xee;
const KBD_SELF_TEST_OK = 0xaa;

export interface I8042Hooks {
  setA20(enabled: boolean): void;
  reset(why: string): void;
}

export class I8042 implements PortHandler {
  private readonly output: { byte: number; aux: boolean }[] = [];
  private commandByte = COMMAND_BYTE_KBD_INT | 0x04 | 0x40; // kbd IRQ, system flag, translation
  private outputPort = OUTPUT_PORT_RESET | OUTPUT_PORT_A20;
  private lastWasCommand = false;
  /** A controller command waiting for its parameter byte on port 0x60. */
  private pendingCommand = 0;
  /** A keyboard command waiting for its parameter (LEDs 0xED, rate 0xF3, scan set 0xF0). */
  private keyboardNeedsParameter = false;

  constructor(
    private readonly kbdIrq: IrqLine,
    private readonly auxIrq: IrqLine,
    private readonly hooks: I8042Hooks,
  ) {}

  register(io: IoBus): void {
    io.register(0x60, 1, this);
    io.register(0x64, 1, this);
  }

  private push(byte: number, aux = false): void {
    this.output.push({ byte, aux });
    this.updateIrq();
  }

  private updateIrq(): void {
    const head = this.output[0];
    const kbd = head !== undefined && !head.aux && (this.commandByte & COMMAND_BYTE_KBD_INT) !== 0;
    const aux = head?.aux === true && (this.commandByte & COMMAND_BYTE_AUX_INT) !== 0;
    // Edge per byte, as the controller raises IRQ 1/12 when it fills the buffer.
    if (kbd) {
      this.kbdIrq.raise();
      this.kbdIrq.lower();
    }
    if (aux) {
      this.auxIrq.raise();
      this.auxIrq.lower();
    }
  }

  read(port: number): number {
    if (port === 0x64) {
      const head = this.output[0];
      return (
        (head ? STATUS_OBF : 0) |
        (head?.aux ? STATUS_AUX_OBF : 0) |
        STATUS_SYS |
        (this.lastWasCommand ? STATUS_CMD : 0)
      );
    }
    const head = this.output.shift();
    if (this.output.length > 0) this.updateIrq();
    return head?.byte ?? 0;
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    if (port === 0x64) {
      this.lastWasCommand = true;
      this.command(value);
    } else {
      this.lastWasCommand = false;
      this.data(value);
    }
  }

  private command(value: number): void {
    this.pendingCommand = 0;
    if (value >= 0x20 && value < 0x40) {
      // Read controller RAM byte (0x20 = the command byte).
      this.push(value === CMD_READ_COMMAND_BYTE ? this.commandByte : 0);
      return;
    }
    if ((value >= 0x60 && value < 0x80) || value === CMD_WRITE_OUTPUT_PORT || value === CMD_WRITE_AUX) {
      this.pendingCommand = value;
      return;
    }
    if (value === CMD_WRITE_KBD_OUTPUT || value === CMD_WRITE_AUX_OUTPUT) {
      this.pendingCommand = value;
      return;
    }
    if (value >= 0xf0) {
      // Pulse output port bits: bit 0 clear in the command = pulse reset.
      if ((value & 1) === 0) this.hooks.reset("i8042 pulse reset (0xFE)");
      return;
    }
    switch (value) {
      case CMD_SELF_TEST:
        this.push(0x55);
        break;
      case CMD_TEST_KBD:
      case CMD_TEST_AUX:
        this.push(0x00);
        break;
      case CMD_DISABLE_KBD:
        this.commandByte |= 0x10;
        break;
      case CMD_ENABLE_KBD:
        this.commandByte &= ~0x10;
        break;
      case CMD_DISABLE_AUX:
        this.commandByte |= 0x20;
        break;
      case CMD_ENABLE_AUX:
        this.commandByte &= ~0x20;
        break;
      case CMD_READ_INPUT_PORT:
        this.push(0x80); // keyboard not inhibited
        break;
      case CMD_READ_OUTPUT_PORT:
        this.push(this.outputPort);
        break;
      case CMD_DISABLE_A20:
        this.setOutputPort(this.outputPort & ~OUTPUT_PORT_A20);
        break;
      case CMD_ENABLE_A20:
        this.setOutputPort(this.outputPort | OUTPUT_PORT_A20);
        break;
      case CMD_PULSE_RESET:
        this.hooks.reset("i8042 pulse reset (0xFE)");
        break;
      default:
        break; // other commands (password, diagnostics) are accepted and ignored
    }
  }

  private data(value: number): void {
    const pending = this.pendingCommand;
    this.pendingCommand = 0;
    if (pending >= 0x60 && pending < 0x80) {
      if (pending === CMD_WRITE_COMMAND_BYTE) this.commandByte = value;
      return;
    }
    switch (pending) {
      case CMD_WRITE_OUTPUT_PORT:
        this.setOutputPort(value);
        return;
      case CMD_WRITE_KBD_OUTPUT:
        this.push(value);
        return;
      case CMD_WRITE_AUX_OUTPUT:
        this.push(value, true);
        return;
      case CMD_WRITE_AUX:
        return; // no mouse: bytes sent to it vanish, and the driver's probe times out once
      default:
        this.keyboardCommand(value);
    }
  }

  private keyboardCommand(value: number): void {
    if (this.keyboardNeedsParameter) {
      this.keyboardNeedsParameter = false;
      this.push(KBD_ACK);
      return;
    }
    switch (value) {
      case KBD_RESET:
        this.push(KBD_ACK);
        this.push(KBD_SELF_TEST_OK);
        break;
      case KBD_GET_ID:
        this.push(KBD_ACK);
        this.push(0xab);
        this.push(0x41); // MF2 keyboard, translated
        break;
      case KBD_ECHO:
        this.push(KBD_ECHO);
        break;
      case 0xed: // set LEDs
      case 0xf3: // set typematic rate
      case 0xf0: // select scan code set
        this.keyboardNeedsParameter = true;
        this.push(KBD_ACK);
        break;
      default:
        this.push(KBD_ACK);
    }
  }

  private setOutputPort(value: number): void {
    const a20Before = (this.outputPort & OUTPUT_PORT_A20) !== 0;
    this.outputPort = value;
    const a20 = (value & OUTPUT_PORT_A20) !== 0;
    if (a20 !== a20Before) this.hooks.setA20(a20);
    if ((value & OUTPUT_PORT_RESET) === 0) this.hooks.reset("i8042 output port reset bit cleared");
  }

  /** Keeps the output port's A20 bit in step when A20 is changed elsewhere (port 0x92). */
  noteA20(enabled: boolean): void {
    this.outputPort = enabled ? this.outputPort | OUTPUT_PORT_A20 : this.outputPort & ~OUTPUT_PORT_A20;
  }
}
