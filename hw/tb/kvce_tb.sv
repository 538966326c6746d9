// SPDX-License-Identifier: MIT
// kvce_tb.sv - replay testbench of the KV Cache Engine (docs/ENGINE_REPLAY.md).
// Reads a $readmemh image written by `cq engine run --trace-hex` (+image=FILE)
// and drives a block with the ENGINE.md ports from it, elastically:
//   - a write-stream beat is held (tvalid) until tready; a token's beats go back
//     to back and end at tlast or after D beats;
//   - AXI-Lite writes are issued only when STATUS.idle reads 1 (polled);
//     register reads are compared with the image;
//   - after a READ_ADDR write the D read beats are compared one by one with the
//     image (data and tlast; tready held high).
// It writes the per-token spans (first beat accepted -> first cycle after the
// token with tready high) and per-read spans (READ_ADDR write handshake -> last
// beat), the SRAM rows (through `KVCE_SRAM, hierarchical) and a summary;
// hw/tb/compare.py checks them against the model's own files.
// The block is `KVCE_DUT (default kvce_standin); a third-party block needs a
// wrapper with the port list below and -DKVCE_SRAM=<path of its row array>.
`ifndef KVCE_DUT
`define KVCE_DUT kvce_standin
`endif
`ifndef KVCE_SRAM
`define KVCE_SRAM dut.sram
`endif
module kvce_tb #(
    parameter int D = 64,
    parameter int W = 273,
    parameter int DEPTH = 256,
    parameter int G = 128,
    parameter int TIER = 1,
    parameter int ADDR_BITS = 8,
    parameter int MAXTOK = 1024,
    parameter int MAXROWS = 1024,
    parameter int IMG_WORDS = 65536
);
    logic clk = 1'b0, rst_n = 1'b0;
    always #5 clk = ~clk;

    logic [15:0] awaddr = 0, araddr = 0, s_tdata = 0;
    logic [31:0] wdata = 0, rdata, m_tdata;
    logic awvalid = 0, wvalid = 0, arvalid = 0, awready, wready, arready;
    logic bvalid, rvalid, s_tvalid = 0, s_tready, s_tuser = 0, s_tlast = 0;
    logic m_tvalid, m_tlast;

    `KVCE_DUT #(.D(D), .W(W), .DEPTH(DEPTH), .G(G), .TIER(TIER), .ADDR_BITS(ADDR_BITS),
                .MAXTOK(MAXTOK), .MAXROWS(MAXROWS)) dut (
        .clk(clk), .rst_n(rst_n),
        .s_axil_awaddr(awaddr), .s_axil_awvalid(awvalid), .s_axil_awready(awready),
        .s_axil_wdata(wdata), .s_axil_wvalid(wvalid), .s_axil_wready(wready),
        .s_axil_bvalid(bvalid), .s_axil_bready(1'b1),
        .s_axil_araddr(araddr), .s_axil_arvalid(arvalid), .s_axil_arready(arready),
        .s_axil_rdata(rdata), .s_axil_rvalid(rvalid), .s_axil_rready(1'b1),
        .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
        .s_axis_tuser(s_tuser), .s_axis_tlast(s_tlast),
        .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(1'b1),
        .m_axis_tlast(m_tlast));

    // cycle n is the one ending at the n-th rising edge; handshakes are sampled there
    longint unsigned cyc = 0, max_cycles = 50000000;
    logic s_fire_q = 0, aw_fire_q = 0, ar_fire_q = 0;
    logic [32:0] rq [$];
    longint unsigned rq_cyc [$];
    always @(posedge clk) begin
        cyc <= cyc + 1;
        s_fire_q <= s_tvalid && s_tready;
        aw_fire_q <= awvalid && awready && wvalid && wready;
        ar_fire_q <= arvalid && arready;
        if (m_tvalid) begin
            rq.push_back({m_tlast, m_tdata});
            rq_cyc.push_back(cyc);
        end
        if (cyc > max_cycles) begin
            $display("kvce_tb: TIMEOUT after %0d cycles", cyc);
            $fatal(1);
        end
    end

    logic [63:0] img [0:IMG_WORDS-1];
    int f_spans, f_rows, f_sum;
    longint unsigned beats = 0, beat_bad = 0, regs = 0, reg_bad = 0, ntok = 0, nrd = 0;

    task automatic axil_write(input logic [15:0] a, input logic [31:0] v,
                              output longint unsigned hs);
        awaddr = a;
        wdata = v;
        awvalid = 1;
        wvalid = 1;
        do @(negedge clk); while (!aw_fire_q);
        hs = cyc - 1;
        awvalid = 0;
        wvalid = 0;
    endtask

    task automatic axil_read(input logic [15:0] a, output logic [31:0] v);
        araddr = a;
        arvalid = 1;
        do @(negedge clk); while (!ar_fire_q);
        arvalid = 0;
        while (!rvalid) @(negedge clk);
        v = rdata;
        @(negedge clk);
    endtask

    task automatic wait_idle();
        logic [31:0] st;
        do axil_read(16'h04, st); while (!st[0]);
    endtask

    // stream the token whose first beat is img[i]; returns the index after it
    task automatic send_token(inout int i);
        longint unsigned f0 = 0;
        int b = 0;
        logic done = 0;
        while (!done) begin
            s_tdata = img[i][15:0];
            s_tuser = img[i][32];
            s_tlast = img[i][33];
            s_tvalid = 1;
            do @(negedge clk); while (!s_fire_q);
            if (b == 0) f0 = cyc - 1;
            b++;
            done = img[i][33] || b == D || img[i + 1][63:56] != 8'h20;
            i++;
        end
        s_tvalid = 0;
        s_tlast = 0;
        while (!s_tready) @(negedge clk);
        $fwrite(f_spans, "T %0d %0d\n", ntok, cyc - f0);
        ntok++;
    endtask

    // the D expected beats after a READ_ADDR write (handshake in cycle hs)
    task automatic check_read(inout int i, input longint unsigned hs);
        longint unsigned last = 0;
        for (int b = 0; b < D; b++) begin
            logic [32:0] got;
            while (rq.size() == 0) @(negedge clk);
            got = rq.pop_front();
            last = rq_cyc.pop_front();
            beats++;
            if (img[i][63:56] != 8'h31 || got != img[i][32:0]) begin
                if (beat_bad < 10)
                    $display("kvce_tb: read %0d beat %0d: got %09h, image %016h", nrd, b, got,
                             img[i]);
                beat_bad++;
            end
            i++;
        end
        $fwrite(f_spans, "R %0d %0d\n", nrd, last - hs);
        nrd++;
    endtask

    initial begin
        string path;
        int i = 0;
        logic [31:0] v;
        longint unsigned hs;
        if (!$value$plusargs("image=%s", path)) begin
            $display("kvce_tb: +image=FILE is required");
            $fatal(1);
        end
        for (int k = 0; k < IMG_WORDS; k++) img[k] = 64'hFF00000000000000;
        $readmemh(path, img);
        void'($value$plusargs("max_cycles=%d", max_cycles));
        if (!$value$plusargs("out=%s", path)) path = "tb";
        f_spans = $fopen({path, ".tb_spans"}, "w");
        f_rows = $fopen({path, ".tb_rows"}, "w");
        f_sum = $fopen({path, ".tb_summary"}, "w");
        repeat (4) @(negedge clk);
        rst_n = 1;
        @(negedge clk);
        forever begin
            case (img[i][63:56])
                8'h01, 8'h02: i++;
                8'h10: begin
                    wait_idle();
                    axil_write(img[i][47:32], img[i][31:0], hs);
                    i++;
                    if (img[i - 1][47:32] == 16'h2C) check_read(i, hs);
                end
                8'h11: begin
                    axil_read(img[i][47:32], v);
                    regs++;
                    if (v != img[i][31:0]) begin
                        $display("kvce_tb: register %04h reads %08h, image %08h", img[i][47:32],
                                 v, img[i][31:0]);
                        reg_bad++;
                    end
                    i++;
                end
                8'h20: send_token(i);
                8'hFF: break;
                default: begin
                    $display("kvce_tb: bad image word %0d: %016h", i, img[i]);
                    $fatal(1);
                end
            endcase
        end
        for (int a = 0; a < DEPTH; a++) $fwrite(f_rows, "%04h %h\n", a[15:0], `KVCE_SRAM[a]);
        $fwrite(f_sum, "tokens %0d reads %0d beats %0d beat_mismatches %0d regs %0d reg_mismatches %0d cycles %0d\n",
                ntok, nrd, beats, beat_bad, regs, reg_bad, cyc);
        $fclose(f_spans);
        $fclose(f_rows);
        $fclose(f_sum);
        $display("kvce_tb: %0d tokens, %0d reads, %0d beats (%0d differ), %0d register reads (%0d differ), %0d cycles",
                 ntok, nrd, beats, beat_bad, regs, reg_bad, cyc);
        $finish;
    end
endmodule
