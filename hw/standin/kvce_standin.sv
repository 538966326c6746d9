// SPDX-License-Identifier: MIT
// kvce_standin.sv - a behavioural stand-in for the KV Cache Engine, written for
// this repository so that the replay kit (hw/tb/, docs/ENGINE_REPLAY.md) runs in
// CI without any third-party RTL. It has the ENGINE.md ports (AXI-Lite, the
// s_axis_kv write stream, the m_axis_kv read stream) and the v0.2 protocol:
// D beats per token (or fewer, ended by tlast), tready low while a token is
// compressed, key groups of G tokens whose base is latched at the group's first
// token, WRITE_ADDR sampled when a record is stored, addresses ADDR_BITS wide,
// a read answered after 5 cycles with D beats and tlast on the last.
// It does not compress: the span of each token and the rows it stores come from
// the model (+standin_tokens, +standin_rows, written by `cq engine run
// --trace-hex`). It does decode: every read beat is its own integer dequantize
// (|code| x significand, normalized into fp32) of the row it holds, in the v0.2
// record layouts, so the testbench's beat checks exercise its SRAM and addresses.
// Registers: CTRL (soft reset, enable), STATUS (idle), INFO_DIM, INFO_TIER,
// INFO_GROUP, INFO_SRAM_DEPTH, INFO_VERSION, WRITE_ADDR, READ_ADDR; others read
// 0xDEADBEEF.
module kvce_standin #(
    parameter int D = 64,
    parameter int W = 273,          // SRAM row bits
    parameter int DEPTH = 256,
    parameter int G = 128,
    parameter int TIER = 1,         // 0 CQ-8, 1 CQ-4, 2 CQ-4+
    parameter int ADDR_BITS = 8,    // clog2(DEPTH)
    parameter int MAXTOK = 1024,
    parameter int MAXROWS = 1024
) (
    input  logic        clk,
    input  logic        rst_n,
    input  logic [15:0] s_axil_awaddr,
    input  logic        s_axil_awvalid,
    output logic        s_axil_awready,
    input  logic [31:0] s_axil_wdata,
    input  logic        s_axil_wvalid,
    output logic        s_axil_wready,
    output logic        s_axil_bvalid,
    input  logic        s_axil_bready,
    input  logic [15:0] s_axil_araddr,
    input  logic        s_axil_arvalid,
    output logic        s_axil_arready,
    output logic [31:0] s_axil_rdata,
    output logic        s_axil_rvalid,
    input  logic        s_axil_rready,
    input  logic [15:0] s_axis_tdata,
    input  logic        s_axis_tvalid,
    output logic        s_axis_tready,
    input  logic        s_axis_tuser,
    input  logic        s_axis_tlast,
    output logic [31:0] m_axis_tdata,
    output logic        m_axis_tvalid,
    input  logic        m_axis_tready,
    output logic        m_axis_tlast
);
    localparam logic [31:0] AMASK = ADDR_BITS == 0 ? 32'd0 : 32'((64'd1 << ADDR_BITS) - 1);
    typedef enum logic [2:0] {S_IDLE, S_COLLECT, S_BUSY, S_RWAIT, S_OUT} st_t;

    logic [W-1:0] sram [0:DEPTH-1];
    logic [W-1:0] rows [0:MAXROWS-1];
    logic [63:0]  toks [0:MAXTOK-1];
    initial begin
        string f;
        for (int a = 0; a < DEPTH; a++) sram[a] = '0;
        if ($value$plusargs("standin_tokens=%s", f)) $readmemh(f, toks);
        if ($value$plusargs("standin_rows=%s", f)) $readmemh(f, rows);
    end

    st_t st;
    logic enable, is_key;
    logic [31:0] write_addr, read_addr, kbase;
    int unsigned nbeat, busy, tok_idx, row_ptr, nrows, wr_i, kcount, rd_cnt, oidx;

    assign s_axis_tready = enable && (st == S_IDLE || st == S_COLLECT);
    assign s_axil_awready = 1'b1;
    assign s_axil_wready = 1'b1;
    assign s_axil_arready = !s_axil_rvalid;

    // integer dequantize: code x fp16 field -> fp32 bits (a zero product is +0.0)
    function automatic logic [31:0] deq(input int code, input logic [15:0] f);
        int mag, sig, e, p;
        logic sign;
        logic [31:0] prod;
        mag = code < 0 ? -code : code;
        sign = (code < 0) ^ f[15];
        if (f[14:10] == 5'h1F) return {sign, 31'h7FC00000};
        if (f[14:10] == 5'd0) begin
            sig = int'(f[9:0]);
            e = -24;
        end else begin
            sig = int'(f[9:0]) + 1024;
            e = int'(f[14:10]) - 25;
        end
        prod = 32'(mag * sig);
        if (prod == 0) return 32'd0;
        p = 0;
        for (int i = 0; i < 24; i++) if (prod[i]) p = i;
        return {sign, 8'(p + e + 127), 23'((prod << (23 - p)) & 32'h7FFFFF)};
    endfunction

    // beat c of a row: v0.2 layouts (value / CQ-8 record, or tagged key record)
    function automatic logic [31:0] beat_of(input logic [W-1:0] row, input int c);
        if (TIER != 0 && row[W-1])
            return deq(int'($signed(row[4*c +: 4])), row[4*D + 16*c +: 16]);
        if (TIER == 0) return deq(int'($signed(row[8*c +: 8])), row[8*D +: 16]);
        return deq(int'($signed(row[4*c +: 4])), row[4*D +: 16]);
    endfunction

    assign m_axis_tvalid = st == S_OUT;
    assign m_axis_tdata = st == S_OUT ? beat_of(sram[read_addr % DEPTH], int'(oidx)) : 32'd0;
    assign m_axis_tlast = st == S_OUT && oidx == D - 1;

    function automatic logic [31:0] reg_value(input logic [15:0] off);
        case (off)
            16'h00: return {30'd0, enable, 1'b0};
            16'h04: return {31'd0, st == S_IDLE};
            16'h08: return 32'(D);
            16'h0C: return 32'(TIER);
            16'h10: return 32'(G);
            16'h14: return 32'(DEPTH);
            16'h20: return 32'h00020000;
            16'h28: return write_addr;
            16'h2C: return read_addr;
            default: return 32'hDEADBEEF;
        endcase
    endfunction

    // the record address of the next row write
    logic [31:0] wa;
    assign wa = (is_key ? kbase + wr_i : write_addr) & AMASK;
    // at the end of a token's n beats: its span and row count come from the model
    logic end_tok;
    int unsigned end_n;
    always_comb begin
        end_tok = 1'b0;
        end_n = 0;
        if (s_axis_tvalid && s_axis_tready) begin
            end_n = st == S_IDLE ? 1 : nbeat + 1;
            end_tok = s_axis_tlast || end_n == D;
        end
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            st <= S_IDLE;
            enable <= 1'b0;
            write_addr <= 0;
            read_addr <= 0;
            kbase <= 0;
            nbeat <= 0;
            busy <= 0;
            tok_idx <= 0;
            row_ptr <= 0;
            nrows <= 0;
            wr_i <= 0;
            kcount <= 0;
            rd_cnt <= 0;
            oidx <= 0;
            is_key <= 1'b0;
            s_axil_bvalid <= 1'b0;
            s_axil_rvalid <= 1'b0;
            s_axil_rdata <= 0;
        end else begin
            if (s_axil_bvalid && s_axil_bready) s_axil_bvalid <= 1'b0;
            if (s_axil_rvalid && s_axil_rready) s_axil_rvalid <= 1'b0;
            if (s_axil_arvalid && s_axil_arready) begin
                s_axil_rdata <= reg_value(s_axil_araddr);
                s_axil_rvalid <= 1'b1;
            end
            case (st)
                S_IDLE:
                    if (s_axis_tvalid && s_axis_tready) begin
                        is_key <= TIER != 0 && !s_axis_tuser;
                        if (TIER != 0 && !s_axis_tuser && kcount == 0) kbase <= write_addr;
                        nbeat <= 1;
                        if (!end_tok) st <= S_COLLECT;
                    end
                S_COLLECT:
                    if (s_axis_tvalid) nbeat <= nbeat + 1;
                S_BUSY: begin
                    if (wr_i < nrows) begin // one row per cycle, addresses as the v0.2 block
                        if (wa < DEPTH) sram[wa] <= rows[row_ptr];
                        row_ptr <= row_ptr + 1;
                        wr_i <= wr_i + 1;
                    end
                    if (busy == 0) begin
                        st <= S_IDLE;
                        if (is_key) kcount <= kcount + 1 == G ? 0 : kcount + 1;
                    end else begin
                        busy <= busy - 1;
                    end
                end
                S_RWAIT:
                    if (rd_cnt == 0) begin
                        oidx <= 0;
                        st <= S_OUT;
                    end else begin
                        rd_cnt <= rd_cnt - 1;
                    end
                S_OUT: begin // v0.2: the read port ignores tready
                    if (oidx == D - 1) st <= S_IDLE;
                    oidx <= oidx + 1;
                end
                default: st <= S_IDLE;
            endcase
            if (end_tok) begin
                busy <= toks[tok_idx][31:0] - end_n - 1;
                nrows <= toks[tok_idx][63:32];
                tok_idx <= tok_idx + 1;
                wr_i <= 0;
                st <= S_BUSY;
            end
            if (s_axil_awvalid && s_axil_wvalid) begin
                s_axil_bvalid <= 1'b1;
                case (s_axil_awaddr)
                    16'h00: begin
                        enable <= s_axil_wdata[1];
                        if (s_axil_wdata[0]) begin
                            st <= S_IDLE;
                            nbeat <= 0;
                            kcount <= 0;
                        end
                    end
                    16'h28: write_addr <= s_axil_wdata & AMASK;
                    16'h2C: begin
                        read_addr <= s_axil_wdata & AMASK;
                        if (st == S_IDLE) begin // v0.2: taken only when idle
                            rd_cnt <= 4;
                            st <= S_RWAIT;
                        end
                    end
                    default: ;
                endcase
            end
        end
    end
endmodule
